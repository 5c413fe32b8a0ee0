"""Engagement signals: chat events in; per-response outcomes, per-session summaries and
per-arm windowed partial aggregates out (all to ``engagement.signals``).

Event time throughout. Each partition's watermark is the largest event time it has
seen. A reply is finalised by the user's next message in the conversation (continued
when it came within ``continue_window_s``), by ``session_ended``, or by a timer when
the watermark passes reply time + continue window + grace. ``session_ended`` usually
comes from another producer than the gateway's messages and replies (the client app),
so it may overtake them: the session is closed only when the watermark passes its end
time + grace, and messages stamped before the end that arrive meanwhile still count.

Window aggregates are partials of one source partition (``partition`` set), emitted
when the watermark passes window end + grace; the canary sums partials of the same
(arm, model_version, window_start). Because ``chat.events`` is keyed by user,
distinct-user counts of different partitions never overlap and add up exactly.

Attribution to windows: a session counts in the window of its end (``session_ended``
time, or last activity + idle timeout); a reply's outcome counts in the window of the
moment it was decided (next message time, session end, or reply time + continue window);
users assigned at ``session_started`` time; users engaged at each user message time.

State types (``streams.processors._signals_state``): a SessionState per conversation, a
WindowState per open window partial (its counters a ``schemas.WindowCounters``), and
SignalsMeta; timers, pending ends and tombstones are the shared ConversationLifecycle's.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import (
    CHAT_EVENTS,
    DEFAULT_LIMITS,
    DEFAULT_POLICY,
    ENGAGEMENT_SIGNALS,
    ModelResponseEvent,
    PolicyRuleSet,
    ResponseOutcome,
    SessionEndedEvent,
    SessionStartedEvent,
    SessionSummary,
    UserFeedbackEvent,
    UserMessageEvent,
    ValidationLimits,
    check_policy,
    follows_instructions,
    parse_chat_event,
)
from streams.processors._base import EventTimeProcessor, Output, PartitionState, SourcePartition
from streams.processors._events import bump, from_ms, to_ms
from streams.processors._lifecycle import ConversationLifecycle
from streams.processors._metrics import WindowGauges, processor_metrics
from streams.processors._signals_state import ReplyState, SessionState, SignalsCodec, SignalsMeta, WindowState
from streams.processors._signals_users import UserHistories
from streams.processors._signals_windows import ArmWindows
from streams.processors.signals_config import SignalsConfig

State = PartitionState[SignalsMeta]


class SignalsProcessor(EventTimeProcessor[SignalsMeta]):
    """Turns ``chat.events`` into ``engagement.signals``. See the module docstring."""

    name = "signals"
    inputs: tuple[str, ...] = (CHAT_EVENTS,)
    codec = SignalsCodec()

    def __init__(
        self,
        config: SignalsConfig | None = None,
        policy: PolicyRuleSet = DEFAULT_POLICY,
        limits: ValidationLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.config = config or SignalsConfig()
        self._policy = policy
        self._limits = limits
        self._cw = self.config.continue_window_s * 1000
        self._w = self.config.window_s * 1000
        self._grace = self.config.grace_s * 1000
        self._idle = self.config.session_idle_s * 1000
        self._lifecycle = ConversationLifecycle[SessionState](
            "s|",
            continue_window_ms=self._cw,
            grace_ms=self._grace,
            idle_ms=self._idle,
            on_reply_due=self._reply_due,
            on_end=self._session_ends,
            on_idle=self._session_idles,
        )
        self._metrics = processor_metrics()
        self._windows = ArmWindows(self.config.window_s, self._grace, WindowGauges(self._metrics))
        self._users = UserHistories(self.config.user_history_s * 1000)
        self._quiet_ms = None if self.config.quiet_partition_s is None else int(self.config.quiet_partition_s * 1000)
        self._last_seen: dict[SourcePartition, tuple[int, int]] = {}  # source -> (last offset, wall ms first seen)

    # -- restore ---------------------------------------------------------------------
    def _on_restore(self, source: SourcePartition, state: State) -> None:
        self._lifecycle.restore(source, state)
        self._windows.restore(source, state)
        self._users.restore(source, state)

    def _on_drop(self, source: SourcePartition) -> None:
        self._lifecycle.drop(source)
        self._windows.drop(source)
        self._users.drop(source)
        self._last_seen.pop(source, None)

    # -- records ---------------------------------------------------------------------
    def _apply(self, source: SourcePartition, state: State, key: str | None, value: bytes) -> list[Output]:
        event = parse_chat_event(value, self._limits)
        t = to_ms(event.ts)
        out: list[Output] = []
        meta = state.meta
        skey = "s|" + event.conversation_id
        sess: SessionState | None = state.entries.get(skey)
        if t < meta.closed_until_ms:  # its window is closed: count it, keep applying it to non-window state
            self._metrics.late_events.labels(self.name).inc()
            arm = sess.arm if sess else getattr(event, "arm", None)
            bump(meta.late_events, arm or "unknown")
        if sess is None:
            sess = SessionState(event.user_id, event.conversation_id, event.character_id, first_ms=t, last_ms=t)
            state.put(skey, sess)
            self._lifecycle.opened(source, skey, t)
        else:
            state.dirty.add(skey)
        if isinstance(event, UserMessageEvent):
            self._on_message(source, state, sess, event, t, out)
        elif isinstance(event, ModelResponseEvent):
            self._on_response(source, state, skey, sess, event, t, out)
        elif isinstance(event, UserFeedbackEvent):
            self._on_feedback(sess, event)
        elif isinstance(event, SessionStartedEvent):
            self._users.saw(state, event, t)
            if sess.started_ms is None and sess.ended_ms is None:
                sess.started_ms = t
                self._learn_arm(source, state, sess, event.arm, event.model_version)
                w = self._windows.window(source, state, event.arm, sess.model_version, t)
                if w is not None:
                    w.assigned[sess.user_id] = w.active[sess.user_id] = None
        elif isinstance(event, SessionEndedEvent):
            self._lifecycle.end_event(source, state, skey, sess, t, event.reason, out)
        if t > meta.watermark_ms:
            meta.watermark_ms = t
            heap = self._lifecycle.heaps[source]
            # Most events fire nothing: check before paying for the call.
            if (heap and heap[0][0] <= t) or ((t - self._grace) // self._w) * self._w > meta.closed_until_ms:
                self._fire(source, state, t, out)
        return out

    def _learn_arm(self, source: SourcePartition, state: State, sess: SessionState, arm: str, mv: str) -> None:
        if sess.arm is not None:
            return
        sess.arm, sess.model_version = arm, mv
        for ts in sess.unattributed_ms:
            w = self._windows.window(source, state, arm, mv, ts)
            if w is not None:
                w.engaged[sess.user_id] = w.active[sess.user_id] = None
        sess.unattributed_ms = []

    def _on_message(
        self,
        source: SourcePartition,
        state: State,
        sess: SessionState,
        event: UserMessageEvent,
        t: int,
        out: list[Output],
    ) -> None:
        if not self._lifecycle.accepts_message(sess, event.turn, t):
            self._metrics.dropped.labels(self.name, "message_after_end_or_duplicate").inc()
            return
        sess.messages[event.turn] = t
        if t > sess.last_ms:
            sess.last_ms = t  # the session's idle timer re-arms itself from this
        if sess.arm is None:
            sess.unattributed_ms.append(t)
        else:
            w = self._windows.window(source, state, sess.arm, sess.model_version, t)
            if w is not None:
                w.engaged[sess.user_id] = w.active[sess.user_id] = None
        # Replies to the previous turn (a regeneration adds one), oldest first; replies stamped
        # in the same millisecond keep their arrival order (dicts, also restored ones, keep it).
        prev = [(r.ts_ms, i, req) for i, (req, r) in enumerate(sess.replies.items()) if r.turn == event.turn - 1]
        if prev:
            latest = max(prev)[2]
            for _, _, req in sorted(prev):
                continued = req == latest and t - sess.replies[req].ts_ms <= self._cw
                self._finalise(source, state, sess, req, continued, "next_message", t, out)

    def _on_response(
        self,
        source: SourcePartition,
        state: State,
        skey: str,
        sess: SessionState,
        event: ModelResponseEvent,
        t: int,
        out: list[Output],
    ) -> None:
        req = event.request_id
        if req in sess.replies or req in sess.decided:
            self._metrics.dropped.labels(self.name, "duplicate_response").inc()
            return
        self._users.saw(state, event, t)
        self._learn_arm(source, state, sess, event.arm, event.model_version)
        w = self._windows.window(source, state, event.arm, event.model_version, t)
        if w is not None:  # the user is present on the arm in this window, engaged or not
            w.active[sess.user_id] = None
        sess.n_replies += 1
        sess.replies[req] = ReplyState(
            event.turn,
            t,
            event.model_version,
            event.arm,
            follows_instructions(event.text, event.instructions),
            not check_policy(event.text, self._policy).passed,
            event.latency_ms,
            sess.early_feedback.pop(event.turn, []),
        )
        if t > sess.last_ms:
            sess.last_ms = t
        nxt = sess.messages.get(event.turn + 1)
        if nxt is not None:
            self._finalise(source, state, sess, req, nxt - t <= self._cw, "next_message", nxt, out)
        elif sess.ended_ms is not None:
            self._finalise(source, state, sess, req, False, "session_ended", sess.ended_ms, out)
        else:
            self._lifecycle.awaiting(source, skey, req, t)

    def _on_feedback(self, sess: SessionState, event: UserFeedbackEvent) -> None:
        pending = [(r.ts_ms, req) for req, r in sess.replies.items() if r.turn == event.turn]
        kind = event.kind.value
        if pending:
            feedback = sess.replies[max(pending)[1]].feedback
        elif event.turn in sess.decided.values() or sess.ended_ms is not None:
            self._metrics.dropped.labels(self.name, "feedback_after_outcome").inc()
            return
        else:
            feedback = sess.early_feedback.setdefault(event.turn, [])
        if kind not in feedback:
            feedback.append(kind)

    # -- lifecycle hooks -------------------------------------------------------------
    def _reply_due(
        self, source: SourcePartition, state: State, skey: str, sess: SessionState, req: str, out: list[Output]
    ) -> None:
        state.touch(skey)
        decided = sess.replies[req].ts_ms + self._cw
        self._finalise(source, state, sess, req, False, "timer", decided, out)

    def _session_ends(
        self,
        source: SourcePartition,
        state: State,
        skey: str,
        sess: SessionState,
        t: int,
        reason: str,
        out: list[Output],
    ) -> None:
        for _, req in sorted((r.ts_ms, req) for req, r in sess.replies.items()):
            self._finalise(source, state, sess, req, False, "session_ended", t, out)
        self._summarise(source, state, sess, max(t, sess.last_ms), t, reason, out)

    def _session_idles(
        self, source: SourcePartition, state: State, skey: str, sess: SessionState, out: list[Output]
    ) -> None:
        timed_out = sess.last_ms + self._idle
        for _, req in sorted((r.ts_ms, req) for req, r in sess.replies.items()):
            self._finalise(source, state, sess, req, False, "timer", timed_out, out)
        self._summarise(source, state, sess, sess.last_ms, timed_out, "idle_timeout", out)

    # -- outputs -----------------------------------------------------------------------
    def _summarise(
        self,
        source: SourcePartition,
        state: State,
        sess: SessionState,
        ended: int,
        decided: int,
        reason: str,
        out: list[Output],
    ) -> None:
        if sess.arm is None:  # never saw session_started nor a reply: no arm to attribute it to
            self._metrics.dropped.labels(self.name, "session_without_arm").inc()
            return
        started = sess.started_ms if sess.started_ms is not None else sess.first_ms
        turns = len(sess.messages)
        ended = max(ended, started)
        summary = SessionSummary.trusted(
            user_id=sess.user_id,
            conversation_id=sess.conversation_id,
            character_id=sess.character_id,
            arm=sess.arm,
            model_version=sess.model_version,
            started_ts=from_ms(started),
            ended_ts=from_ms(ended),
            user_turns=turns,
            responses=sess.n_replies,
            duration_s=(ended - started) / 1000,
            end_reason=reason,
        )
        out.append(Output(ENGAGEMENT_SIGNALS, sess.user_id, summary.to_json_bytes()))
        self._windows.session_ended(source, state, sess.arm, sess.model_version, turns, decided, sess.totals)

    def _finalise(
        self,
        source: SourcePartition,
        state: State,
        sess: SessionState,
        req: str,
        continued: bool,
        by: str,
        decided: int,
        out: list[Output],
    ) -> None:
        reply = sess.replies.pop(req)
        sess.decided[req] = reply.turn
        outcome = ResponseOutcome.trusted(
            user_id=sess.user_id,
            conversation_id=sess.conversation_id,
            character_id=sess.character_id,
            turn=reply.turn,
            request_id=req,
            model_version=reply.model_version,
            arm=reply.arm,
            response_ts=from_ms(reply.ts_ms),
            continued=continued,
            feedback=tuple(reply.feedback),
            instruction_following=reply.instruction_following,
            violation=reply.violation,
            latency_ms=float(reply.latency_ms),
            finalized_by=by,
        )
        out.append(Output(ENGAGEMENT_SIGNALS, sess.user_id, outcome.to_json_bytes()))
        x = self._users.decided(source, state, sess.user_id, continued, decided)
        own = reply.arm == sess.arm and reply.model_version == sess.model_version and sess.ended_ms is None
        self._windows.reply_decided(source, state, reply, continued, decided, x, sess.totals if own else None)

    def _fire(self, source: SourcePartition, state: State, wm: int, out: list[Output]) -> None:
        self._lifecycle.fire(source, state, wm, out)
        self._windows.close(source, state, wm, out)
        self._users.forget(source, state, wm)

    def _advance(self, source: SourcePartition, state: State, now_ms: int) -> list[Output]:
        """Quiet partitions (``quiet_partition_s``): event time follows the wall clock once no
        record arrived for that long, so the last windows close without waiting for traffic."""
        if self._quiet_ms is None:
            return []
        offset = state.meta.offset
        seen = self._last_seen.get(source)
        if seen is None or seen[0] != offset:
            self._last_seen[source] = (offset, now_ms)
            return []
        if now_ms - seen[1] < self._quiet_ms:
            return []
        return self._advance_to(source, state, now_ms - self._quiet_ms)

    def open_windows(self, source: SourcePartition) -> Mapping[str, WindowState]:
        """Current (not yet closed) window partials of ``source``, by entry key (for inspection)."""
        return self._windows.open(source)
