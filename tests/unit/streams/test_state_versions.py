"""Processor state across versions: changelog entries written by earlier builds (state
version 1, untyped dicts with short keys) restore into today's types, keep their timers
and meaning, and are rewritten in the current version at the next commit."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import (
    ArmWindowAggregate,
    MaxWords,
    PreferenceSample,
    ResponseOutcome,
    RewardSample,
    SchemaError,
    SessionSummary,
    TrainJobRequest,
    engagement_signal_adapter,
    parse_message,
)
from streams.processors import (
    BufferConfig,
    BufferProcessor,
    CurationConfig,
    CurationProcessor,
    SignalsConfig,
    SignalsProcessor,
    SourcePartition,
)
from streams.processors._codec import StateVersionError
from streams.processors._lifecycle import PendingEnd
from tests.kits.synthetic_traffic import synthetic_events

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
SRC = SourcePartition("chat.events", 0)
SIGNALS = SignalsConfig(continue_window_s=600, window_s=3600, grace_s=60, session_idle_s=1800)

# Written by the signals processor of an earlier build (state version 1) after: user-1's
# session started on the candidate, a message, a reply with copy feedback, a session end
# at +30 s still waiting for grace; user-2 wrote before its arm was known. The window
# has no "uact": written before users_active was counted.
V1_SIGNALS = {
    "__meta__": b'{"offset":5,"wm":1767607230000,"cu":1767603600000,"late":{}}',
    "s|c1": b'{"u":"user-1","cid":"c1","ch":"ch","arm":"candidate","mv":"v9","st":1767607200000,"ft":1767607200000,'
    b'"lt":1767607202000,"m":{"1":1767607201000},"r":{"r1":{"t":1,"ts":1767607202000,"mv":"v9","arm":"candidate",'
    b'"if":true,"v":false,"lat":120.0,"fb":["copy"]}},"fb":{},"done":{},"eng":[],"nr":1,"end":null,'
    b'"pe":[1767607230000,"user_left"]}',
    "s|c2": b'{"u":"user-2","cid":"c2","ch":"ch","arm":null,"mv":null,"st":null,"ft":1767607205000,'
    b'"lt":1767607205000,"m":{"1":1767607205000},"r":{},"fb":{},"done":{},"eng":[1767607205000],"nr":0,"end":null}',
    "w|candidate|v9|1767607200000": b'{"s":0,"ua":{"user-1":1},"ue":{"user-1":1},"ut":0,"ut2":0,"r":0,"c":0,'
    b'"if":0,"v":0,"lat":0.0,"lb":[0,0,0,0,0,0,0,0,0,0],"late":0}',
}

# Written by the curation processor of an earlier build (pair_across_arms on): turn 1's
# reply was continued (an SFT sample, remembered in d| and n|, and waiting in the pool
# x| for the other arm's reply to "hello there"); turn 2's reply waits for its outcome;
# the session end at +40 s waits for grace ("pe" a bare time there).
V1_CURATION = {
    "__meta__": b'{"offset":4,"wm":1767607240000,"seq":2}',
    "c|c1": b'{"u":"user-1","cid":"c1","ch":"ch","m":{"1":1767607200000,"2":1767607220000},'
    b'"ut":{"1":"hello there","2":"pirates"},"at":{"1":"Hello! What would you like to talk about today?"},'
    b'"r":{"r2":{"t":2,"ts":1767607221000,"text":"Pirates it is. Shall I tell you about the Jolly Roger?",'
    b'"mv":"v1","arm":"baseline","if":true,"v":false,"regen":false,"instr":[],"fb":[]}},"fb":{},"done":{"1":1},'
    b'"end":null,"lt":1767607240000,"pe":1767607240000}',
    "d|5b5caa0eb04334ccd957f315": b"1",
    "n|1": b'{"s":1,"sig":[514447735,798046163,1265566947,159206043,348007259,41820783,376759351,619959229,'
    b"433360553,1016247539,187951156,212449703,12048658,585033565,584258954,66796838,9273550,1209722481,"
    b"619432033,186383309,56712521,68415352,204420196,234193165,570531692,808782301,530622432,499505796,"
    b"400069930,35357683,572950440,48058345]}",
    "x|7c6dbe22937a56ea6b7c4e5c": b'{"s":2,"r":{"baseline|True":{"cid":"c1","req":"r1",'
    b'"text":"Hello! What would you like to talk about today?","ts":1767607201000,'
    b'"instr":[{"kind":"max_words","limit":30}]}}}',
}


def _at(seconds: float) -> int:
    return T0_MS + int(seconds * 1000)


def test_signals_restores_a_version_1_changelog() -> None:
    proc = SignalsProcessor(SIGNALS)
    proc.restore(SRC, V1_SIGNALS)
    assert proc.last_offset(SRC) == 5
    session = proc.state(SRC).entries["s|c1"]
    assert session.pending_end == PendingEnd(_at(30), "user_left") and session.replies["r1"].feedback == ["copy"]
    assert proc.state(SRC).entries["s|c2"].unattributed_ms == [_at(5)]
    (window,) = proc.open_windows(SRC).values()
    assert (window.arm, window.model_version, window.start_ms) == ("candidate", "v9", T0_MS)
    assert list(window.active) == ["user-1"]  # no "uact": the engaged users, as such windows were emitted
    # The next commit rewrites every entry in the current version.
    changes = proc.take_changes(SRC)
    assert set(changes) == set(V1_SIGNALS) and all((v or b"").startswith(b"[3,") for v in changes.values())
    # The restored timers fire as the earlier build's would have.
    outs = [engagement_signal_adapter.validate_json(o.value) for o in proc.advance_to(_at(30 + 60))]
    (outcome,) = [o for o in outs if isinstance(o, ResponseOutcome)]
    assert (outcome.request_id, outcome.finalized_by, outcome.feedback, outcome.latency_ms) == (
        "r1",
        "session_ended",
        ("copy",),
        120.0,
    )
    (summary,) = [o for o in outs if isinstance(o, SessionSummary)]
    assert (summary.arm, summary.model_version, summary.user_turns, summary.end_reason) == (
        "candidate",
        "v9",
        1,
        "user_left",
    )
    outs = [engagement_signal_adapter.validate_json(o.value) for o in proc.advance_to(_at(3600 + 60))]
    (agg,) = [o for o in outs if isinstance(o, ArmWindowAggregate)]
    assert (agg.sessions, agg.users_assigned, agg.users_engaged, agg.users_active, agg.responses) == (1, 1, 1, 1, 1)
    assert agg.latency_buckets[3] == 1 and agg.continued == 0


def test_curation_restores_a_version_1_changelog(make_event: Any) -> None:
    proc = CurationProcessor(CurationConfig(grace_s=60, pair_across_arms=True))
    proc.restore(SRC, V1_CURATION)
    entries = proc.state(SRC).entries
    conversation = entries["c|c1"]
    assert conversation.pending_end == PendingEnd(_at(40), "") and conversation.decided_turns == {1}
    pooled = entries["x|7c6dbe22937a56ea6b7c4e5c"].waiting["baseline", True]
    assert pooled.instructions == (MaxWords(limit=30),) and pooled.request_id == "r1"
    assert all((v or b"").startswith(b"[2,") for v in proc.take_changes(SRC).values())
    # The pending end fires: turn 2's reply is decided, not continued.
    (reward,) = [parse_message(RewardSample, o.value) for o in proc.advance_to(_at(40 + 60))]
    assert reward.response.startswith("Pirates") and not reward.labels.continued
    # The waiting reply still pairs with the other arm's reply to the same context.
    reply = "Hi! What shall we talk about on this fine day?"
    for offset, (type_, at, fields) in enumerate(
        [
            ("user_message", 200, {"turn": 1, "text": "hello there"}),
            ("model_response", 201, {"turn": 1, "request_id": "q1", "arm": "candidate", "text": reply}),
            ("session_ended", 202, {"reason": "user_left"}),
        ],
        start=5,
    ):
        doc = make_event(
            type_, ts=(T0 + timedelta(seconds=at)).isoformat(), conversation_id="c3", character_id="ch", **fields
        )
        proc.process(SRC, offset, "user-3", json.dumps(doc).encode())
    outs = proc.advance_to(_at(202 + 60))
    (pair,) = [parse_message(PreferenceSample, o.value) for o in outs if o.topic == "samples.preference"]
    assert pair.source == "arms" and pair.chosen.startswith("Hello!") and pair.instructions == (MaxWords(limit=30),)


def test_buffer_restores_a_version_1_changelog() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=1000, model="chat"))
    src = SourcePartition("samples.sft", 0)
    proc.restore(
        src,
        {
            "__meta__": b'{"offset":9,"wm":0}',
            "buf": b'{"from":3,"n":6,"first_wall_ms":null,"last_ts_ms":1767607200000,"to":10}',
        },
    )
    assert proc.pending("samples.sft") == 6 and proc.last_offset(src) == 9
    (job_out,) = proc.advance_to(0)
    job = parse_message(TrainJobRequest, job_out.value)
    assert [(r.from_offset, r.to_offset) for r in job.inputs] == [(3, 10)] and job.created_ts == T0


@pytest.mark.parametrize("make", [SignalsProcessor, CurationProcessor])
def test_every_entry_round_trips_through_the_codec(make: Any) -> None:
    proc = make()
    for offset, (_, value) in enumerate(synthetic_events(3000, seed=2, start=T0)):
        with contextlib.suppress(SchemaError):  # bad events are part of the stream
            proc.process(SRC, offset, "k", value)
    changes = {k: v for k, v in proc.take_changes(SRC).items() if v is not None}
    restored = make()
    restored.restore(SRC, changes)
    assert restored.take_changes(SRC) == {}  # nothing to rewrite: all in the current version
    assert {k: restored.codec.encode(k, v) for k, v in restored.state(SRC).entries.items()} == {
        k: v for k, v in changes.items() if k != "__meta__"
    }
    assert restored.snapshot(SRC) == proc.snapshot(SRC)


def test_an_entry_of_an_unknown_state_version_is_refused() -> None:
    with pytest.raises(StateVersionError) as err:
        SignalsProcessor().restore(SRC, {"s|c1": b'[4,"user-1"]'})
    assert (err.value.key, err.value.version, err.value.supported) == ("s|c1", 4, (1, 2, 3))
