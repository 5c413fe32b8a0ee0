"""Signals processor on hand-computed cases: every number below is worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import ArmWindowAggregate, ResponseOutcome, SchemaError, SessionSummary, engagement_signal_adapter
from streams.processors import SignalsConfig, SignalsProcessor, SourcePartition

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a window boundary (window_s = 3600)
SRC = SourcePartition("chat.events", 0)
CONFIG = SignalsConfig(continue_window_s=600, window_s=3600, grace_s=60, session_idle_s=1800)


class Feed:
    """Feeds events to a processor with increasing offsets; collects parsed outputs."""

    def __init__(self, make_event: Any, config: SignalsConfig = CONFIG) -> None:
        self.proc = SignalsProcessor(config)
        self.make_event = make_event
        self.offset = 0
        self.out: list[Any] = []

    def __call__(self, type_: str, at_s: float, **fields: Any) -> list[Any]:
        ts = (T0 + timedelta(seconds=at_s)).isoformat()
        doc = self.make_event(type_, ts=ts, **fields)
        return self.raw(json.dumps(doc).encode())

    def raw(self, value: bytes) -> list[Any]:
        self.offset += 1
        outs = self.proc.process(SRC, self.offset - 1, "u", value)
        parsed = [engagement_signal_adapter.validate_json(o.value) for o in outs]
        self.out.extend(parsed)
        return parsed

    def advance(self, at_s: float) -> list[Any]:
        outs = self.proc.advance_to(int((T0 + timedelta(seconds=at_s)).timestamp() * 1000))
        parsed = [engagement_signal_adapter.validate_json(o.value) for o in outs]
        self.out.extend(parsed)
        return parsed

    def of(self, kind: type) -> list[Any]:
        return [o for o in self.out if isinstance(o, kind)]


def resp(turn: int, req: str, **kw: Any) -> dict[str, Any]:
    return {"turn": turn, "request_id": req, "text": "Nice, what else?", "instructions": [], **kw}


def test_next_message_within_window_continues_and_late_one_does_not(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 2, **resp(1, "r1"))
    (o1,) = feed("user_message", 2 + 600, turn=2)  # exactly at the window edge: continued
    assert isinstance(o1, ResponseOutcome) and o1.continued and o1.finalized_by == "next_message"
    feed("model_response", 603, **resp(2, "r2"))
    (o2,) = feed("user_message", 603 + 601, turn=3)  # one second too late
    assert o2.request_id == "r2" and not o2.continued and o2.finalized_by == "next_message"


def test_out_of_order_next_message_before_response(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    assert feed("user_message", 50, turn=2) == []  # arrives before the reply it continues
    (o,) = feed("model_response", 10, **resp(1, "r1"))
    assert o.continued and o.finalized_by == "next_message" and o.response_ts == T0 + timedelta(seconds=10)


def test_feedback_before_outcome_and_before_response_is_attached(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("user_feedback", 3, turn=1, kind="copy")  # before the reply itself (out of order)
    feed("model_response", 2, **resp(1, "r1"))
    feed("user_feedback", 4, turn=1, kind="thumbs_up")  # before the outcome
    feed("user_feedback", 5, turn=1, kind="thumbs_up")  # duplicate kind: once
    assert feed("session_ended", 20, reason="user_left") == []  # held until event time passes 20 + grace
    (o,) = [x for x in feed.advance(20 + 60) if isinstance(x, ResponseOutcome)]
    assert o.feedback == ("copy", "thumbs_up") and not o.continued and o.finalized_by == "session_ended"
    feed("user_feedback", 30, turn=1, kind="thumbs_down")  # after the outcome: not retro-fitted
    assert len(feed.of(ResponseOutcome)) == 1


def test_session_end_that_overtakes_earlier_events_still_lets_them_count(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 2, **resp(1, "r1"))
    # The client app's end arrives before the gateway's next message and reply (two producers).
    assert feed("session_ended", 30, reason="user_left") == []
    (o1,) = feed("user_message", 20, turn=2)
    assert o1.request_id == "r1" and o1.continued
    feed("model_response", 21, **resp(2, "r2"))
    assert feed("user_message", 31, turn=3) == []  # stamped after the end: dropped
    assert feed.advance(30 + 59) == []
    outs = feed.advance(30 + 60)
    (o2,) = [x for x in outs if isinstance(x, ResponseOutcome)]
    assert o2.request_id == "r2" and not o2.continued and o2.finalized_by == "session_ended"
    (summary,) = [x for x in outs if isinstance(x, SessionSummary)]
    assert (summary.user_turns, summary.responses, summary.end_reason) == (2, 2, "user_left")
    assert summary.ended_ts == T0 + timedelta(seconds=30)


def test_session_end_already_past_grace_closes_the_session_at_once(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 2, **resp(1, "r1"))
    feed("user_message", 500, turn=1, user_id="other", conversation_id="c2")  # watermark 500
    outs = feed("session_ended", 30, reason="user_left")  # 30 + 60 <= 500
    (o,) = [x for x in outs if isinstance(x, ResponseOutcome)]
    assert o.request_id == "r1" and not o.continued and o.finalized_by == "session_ended"
    assert [x.end_reason for x in outs if isinstance(x, SessionSummary)] == ["user_left"]


def test_timer_finalises_unanswered_reply_after_window_plus_grace(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 100, **resp(1, "r1"))
    # Another user's event moves the partition's watermark; 100 + 600 + 60 = 760.
    assert feed("user_message", 759, turn=1, user_id="other", conversation_id="c2") == []
    outs = feed("user_message", 760, turn=2, user_id="other", conversation_id="c2")
    (o,) = [x for x in outs if isinstance(x, ResponseOutcome)]
    assert o.request_id == "r1" and not o.continued and o.finalized_by == "timer"


def test_session_without_responses_and_idle_timeout(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0, arm="candidate", model_version="v9")
    feed("user_message", 10, turn=1)
    feed("user_message", 20, turn=2)
    (summary,) = [x for x in feed.advance(20 + 1800 + 60) if isinstance(x, SessionSummary)]
    assert (summary.user_turns, summary.responses, summary.end_reason) == (2, 0, "idle_timeout")
    assert summary.arm == "candidate" and summary.model_version == "v9"
    assert summary.started_ts == T0 and summary.ended_ts == T0 + timedelta(seconds=20) and summary.duration_s == 20


def test_session_without_arm_is_not_summarised(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 10, turn=1)
    assert feed("session_ended", 20, reason="user_left") == []


def test_window_aggregate_hand_computed(make_event: Any) -> None:
    feed = Feed(make_event)
    # user-1: 2 turns, reply 1 continued, reply 2 ends with the session. Latencies 30 and 700 ms.
    feed("session_started", 0)
    feed("user_message", 5, turn=1)
    feed(
        "model_response", 6, **resp(1, "a1", latency_ms=30.0, text="hi?", instructions=[{"kind": "end_with_question"}])
    )
    feed("user_message", 60, turn=2)
    feed(
        "model_response",
        61,
        **resp(2, "a2", latency_ms=700.0, text="You are stupid.", instructions=[{"kind": "end_with_question"}]),
    )
    feed("session_ended", 100, reason="user_left")
    # user-2: assigned, never writes; its session ends in the same window.
    feed("session_started", 200, user_id="user-2", conversation_id="c2")
    feed("session_ended", 300, user_id="user-2", conversation_id="c2", reason="user_left")
    assert feed.of(ArmWindowAggregate) == []
    # An end takes effect once event time passes it + grace: user-1's (100) at 200, user-2's (300) not yet.
    assert [x.user_id for x in feed.of(SessionSummary)] == ["user-1"]
    assert not [a for a in feed.advance(3600 + 59) if isinstance(a, ArmWindowAggregate)]  # closes at 3600 + grace
    (agg,) = feed.advance(3600 + 60)
    assert isinstance(agg, ArmWindowAggregate)
    assert (agg.arm, agg.model_version, agg.window_start, agg.partition) == ("baseline", "v1", T0, 0)
    assert (agg.sessions, agg.users_assigned, agg.users_engaged, agg.users_active) == (2, 2, 1, 2)
    assert (agg.user_turns, agg.user_turns_sq) == (2, 4)
    assert (agg.responses, agg.continued, agg.instruction_following, agg.violations) == (2, 1, 1, 1)
    assert agg.latency_ms_sum == 730.0
    assert agg.latency_buckets == (0, 1, 0, 0, 0, 1, 0, 0, 0, 0)
    assert agg.breadth == 0.5 and agg.mean_depth == 1.0 and agg.continue_rate == 0.5


def test_window_boundaries_and_late_events(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 3599.999)  # last millisecond of window 0
    feed("session_started", 3600, user_id="u2", conversation_id="c2")  # first of window 1
    feed("user_message", 3600 + 3600 + 60, turn=1, user_id="u3", conversation_id="c3")  # closes windows 0 and 1
    starts = sorted((a.window_start, a.users_assigned) for a in feed.of(ArmWindowAggregate))
    assert starts == [(T0, 1), (T0 + timedelta(hours=1), 1)]
    # An event for window 0 now is past grace: counted as late, not added to the closed window.
    feed("session_started", 10, user_id="u4", conversation_id="c4")
    feed("session_started", 3 * 3600 + 1, user_id="u5", conversation_id="c5")
    aggs = feed.advance(4 * 3600 + 60)
    late = [a for a in aggs if isinstance(a, ArmWindowAggregate) and a.window_start == T0 + timedelta(hours=3)]
    assert late and late[0].late_events == 1 and late[0].users_assigned == 1


def test_replayed_offsets_are_skipped_and_state_round_trips(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 2, **resp(1, "r1"))
    proc = feed.proc
    assert proc.process(SRC, 1, "u", b"anything") == []  # offset 1 already applied
    changes = proc.take_changes(SRC)
    restored = SignalsProcessor(CONFIG)
    restored.restore(SRC, {k: v for k, v in changes.items() if v is not None})
    assert restored.last_offset(SRC) == 2 and restored.snapshot(SRC) == proc.snapshot(SRC)
    # The restored processor rebuilt its timers: the reply still finalises by timer.
    outs = restored.advance_to(int((T0 + timedelta(seconds=2 + 660)).timestamp() * 1000))
    assert [json.loads(o.value)["finalized_by"] for o in outs] == ["timer"]


def test_a_pending_session_end_survives_a_restore(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("session_started", 0)
    feed("user_message", 1, turn=1)
    feed("model_response", 2, **resp(1, "r1"))
    feed("session_ended", 30, reason="user_left")  # waits for event time 30 + grace
    restored = SignalsProcessor(CONFIG)
    restored.restore(SRC, {k: v for k, v in feed.proc.take_changes(SRC).items() if v is not None})
    outs = [
        engagement_signal_adapter.validate_json(o.value)
        for o in restored.advance_to(int((T0 + timedelta(seconds=30 + 60)).timestamp() * 1000))
    ]
    assert [o.finalized_by for o in outs if isinstance(o, ResponseOutcome)] == ["session_ended"]
    assert [o.end_reason for o in outs if isinstance(o, SessionSummary)] == ["user_left"]


def test_bad_input_raises_schema_error_and_counts_as_applied(make_event: Any) -> None:
    feed = Feed(make_event)
    with pytest.raises(SchemaError):
        feed.raw(b"{not json")
    with pytest.raises(SchemaError):
        feed.raw(json.dumps(make_event("user_message", schema_version=99)).encode())
    assert feed.proc.last_offset(SRC) == 1


def _wall_ms(at_s: float) -> int:
    return int((T0 + timedelta(seconds=at_s)).timestamp() * 1000)


def test_quiet_partition_follows_the_wall_clock_only_when_configured(make_event: Any) -> None:
    quiet = CONFIG.model_copy(update={"quiet_partition_s": 300.0})
    for config, expect_window in ((CONFIG, False), (quiet, True)):
        feed = Feed(make_event, config)
        feed("session_started", 0)
        feed("user_message", 5, turn=1)
        feed("model_response", 6, **resp(1, "a1"))
        # Traffic stops. Wall-clock ticks: the first one notes the partition's last offset,
        # later ones move event time to wall clock - 300 s once 300 s passed without a record.
        ticks = [feed.proc.advance(_wall_ms(at)) for at in (10, 200, 309)]
        assert ticks == [[], [], []]  # quiet for 299 s only: nothing moves
        outs = [engagement_signal_adapter.validate_json(o.value) for o in feed.proc.advance(_wall_ms(3600 + 60 + 300))]
        # Event time is now 3600 + 60: reply timer, idle session and window [0, 3600) all due.
        kinds = sorted(type(o).__name__ for o in outs)
        assert kinds == (["ArmWindowAggregate", "ResponseOutcome", "SessionSummary"] if expect_window else [])


def test_quiet_partition_rule_waits_while_records_arrive(make_event: Any) -> None:
    feed = Feed(make_event, CONFIG.model_copy(update={"quiet_partition_s": 300.0}))
    feed("session_started", 0)
    assert feed.proc.advance(_wall_ms(10)) == []
    feed("user_message", 5, turn=1)  # a record between ticks: the quiet period starts again
    assert feed.proc.advance(_wall_ms(3600 + 60 + 300)) == []
    assert feed.proc.advance(_wall_ms(3600 + 60 + 599)) == []
    assert len(feed.proc.advance(_wall_ms(3600 + 60 + 600))) > 0
