"""The signals processor's per-session sums (the units of the canary's variances) and the
users' pre-period covariate (CUPED's): sums of every window partial of every partition
equal the sums over the sessions themselves, as the per-reply outcomes and the session
summaries tell them; a user's covariate is their continue rate before the experiment
began; sessions of state version 2 restore with empty totals."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from schemas import ArmWindowAggregate, ResponseOutcome, SessionSummary, engagement_signal_adapter
from streams import partition_for_key
from streams.processors import SignalsConfig, SignalsProcessor, SourcePartition
from streams.processors._signals_users import covariate
from tests.kits.synthetic_traffic import synthetic_events

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_per_session_sums_add_up_across_windows_and_partitions() -> None:
    events = synthetic_events(4000, seed=3, bad_share=0.0, start=T0, span_s=3 * 3600)
    proc = SignalsProcessor(SignalsConfig(window_s=600, grace_s=60, continue_window_s=300, session_idle_s=900))
    outputs = []
    for offset, (key, value) in enumerate(events):
        assert key is not None
        source = SourcePartition("chat.events", partition_for_key(key.encode(), 2))
        outputs += proc.process(source, offset, key, value)
    outputs += proc.advance_to(int((T0 + timedelta(days=1)).timestamp() * 1000))
    signals = [engagement_signal_adapter.validate_json(o.value) for o in outputs]
    aggs = [s for s in signals if isinstance(s, ArmWindowAggregate)]
    assert {a.partition for a in aggs} == {0, 1} and len({a.window_start for a in aggs}) >= 10
    ended = {(s.conversation_id, s.arm, s.model_version) for s in signals if isinstance(s, SessionSummary)}
    per_session: dict[tuple[str, str, str], list[ResponseOutcome]] = defaultdict(list)
    for s in signals:
        if isinstance(s, ResponseOutcome):
            per_session[s.conversation_id, s.arm, s.model_version].append(s)
    expected: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for conv, arm, version in ended:
        replies = per_session.get((conv, arm, version), [])
        n, c = len(replies), sum(r.continued for r in replies)
        v, f = sum(r.violation for r in replies), sum(r.instruction_following for r in replies)
        e = expected[arm + "|" + version]
        for name, value in (
            ("session_replies", n),
            ("session_replies_sq", n * n),
            ("session_continued", c),
            ("session_continued_sq", c * c),
            ("session_continued_x_replies", c * n),
            ("session_violations_sq", v * v),
            ("session_instruction_following_x_replies", f * n),
        ):
            e[name] += value
    got: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for a in aggs:
        counts = a.counters()
        for name in expected[a.arm + "|" + a.model_version]:
            got[a.arm + "|" + a.model_version][name] += getattr(counts, name)
    assert set(expected) == {"baseline|v1", "candidate|v2"}
    assert {k: dict(v) for k, v in got.items()} == {k: dict(v) for k, v in expected.items()}
    # every reply was decided and every session ended, so the two views count the same replies
    total = sum(a.responses for a in aggs)
    assert total == sum(a.session_replies for a in aggs) == sum(len(r) for r in per_session.values())
    # the covariate is carried per reply and per session alike
    assert sum(a.covariate_sum for a in aggs) == sum(a.session_covariate for a in aggs)


def _event(kind: str, ts: datetime, **fields: object) -> bytes:
    base = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "type": kind,
        "ts": ts.isoformat(),
        "user_id": "user-1",
        "conversation_id": str(fields.pop("conversation", "c1")),
        "character_id": "ch",
        "surface": "app",
    }
    return json.dumps({**base, **fields}).encode()


def _reply(ts: datetime, turn: int, arm: str, version: str, conversation: str) -> bytes:
    return _event(
        "model_response",
        ts,
        turn=turn,
        text="hi?",
        model_version=version,
        arm=arm,
        request_id=f"{conversation}-{turn}",
        latency_ms=10.0,
        prompt_tokens=1,
        completion_tokens=1,
        instructions=[],
        conversation=conversation,
    )


def test_the_covariate_is_the_users_continue_rate_before_the_experiment() -> None:
    proc = SignalsProcessor(SignalsConfig(window_s=3600, grace_s=0, continue_window_s=60, session_idle_s=600))
    src = SourcePartition("chat.events", 0)
    offset = 0

    def feed(value: bytes) -> None:
        nonlocal offset
        proc.process(src, offset, "user-1", value)
        offset += 1

    # Before the experiment: three baseline replies, all continued.
    t = T0
    for turn in (1, 2, 3):
        feed(_event("user_message", t, turn=turn, text="hi", conversation="c1"))
        feed(_reply(t + timedelta(seconds=1), turn, "baseline", "v1", "c1"))
        t += timedelta(seconds=10)
    feed(_event("user_message", t, turn=4, text="bye", conversation="c1"))  # decides reply 3: continued
    history = proc.state(src).entries["u|user-1"]
    assert (history.replies, history.continued) == (3, 3)
    # The next user's session goes to candidate v2: an experiment starts; user-1's history before it is the pre-period.
    t += timedelta(minutes=30)
    feed(_reply(t, 1, "candidate", "v2", "other"))
    feed(_event("user_message", t, turn=1, text="hi", conversation="c2"))
    feed(_reply(t + timedelta(seconds=1), 1, "candidate", "v2", "c2"))
    feed(_event("user_message", t + timedelta(seconds=5), turn=2, text="again", conversation="c2"))
    history = proc.state(src).entries["u|user-1"]
    assert (history.pre_replies, history.pre_continued, history.replies, history.continued) == (3, 3, 1, 1)
    assert covariate(history) == (3 + 1) / (3 + 2)
    assert covariate(None) == 0.5


def test_a_version_2_session_restores_with_empty_totals() -> None:
    v2 = (
        b'[2,"user-1","c1","ch","candidate","v9",1767607200000,1767607200000,1767607202000,'
        b'{"1":1767607201000},{},{},{"r1":1},[],1,null,null]'
    )
    proc = SignalsProcessor()
    proc.restore(SourcePartition("chat.events", 0), {"s|c1": v2})
    session = proc.state(SourcePartition("chat.events", 0)).entries["s|c1"]
    assert session.decided == {"r1": 1} and session.totals.replies == 0
    assert proc.take_changes(SourcePartition("chat.events", 0))["s|c1"].startswith(b"[3,")
