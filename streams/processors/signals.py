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
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from heapq import heappop
from typing import Any

from schemas import (
    CHAT_EVENTS,
    DEFAULT_LIMITS,
    DEFAULT_POLICY,
    ENGAGEMENT_SIGNALS,
    LATENCY_BUCKETS_MS,
    SCHEMA_VERSION,
    ArmWindowAggregate,
    ModelResponseEvent,
    PolicyRuleSet,
    SessionEndedEvent,
    SessionStartedEvent,
    UserFeedbackEvent,
    UserMessageEvent,
    ValidationLimits,
    check_policy,
    follows_instructions,
    parse_chat_event,
)
from streams.processors._base import META, EventTimeProcessor, Output, PartitionState, SourcePartition
from streams.processors._events import Timers, bump, dumps, from_ms, iso_ms, to_ms
from streams.processors._metrics import processor_metrics
from streams.processors.signals_config import SignalsConfig

_N_BUCKETS = len(LATENCY_BUCKETS_MS)


def _bucket(latency_ms: float) -> int:
    """Index of the first bucket bound >= latency (the last bucket takes the rest)."""
    return min(bisect_left(LATENCY_BUCKETS_MS, latency_ms), _N_BUCKETS - 1)


def _new_window() -> dict[str, Any]:
    return {
        "s": 0,
        "ua": {},
        "ue": {},
        "uact": {},
        "ut": 0,
        "ut2": 0,
        "r": 0,
        "c": 0,
        "if": 0,
        "v": 0,
        "lat": 0.0,
        "lb": [0] * _N_BUCKETS,
        "late": 0,
    }


class SignalsProcessor(EventTimeProcessor):
    """Turns ``chat.events`` into ``engagement.signals``. See the module docstring."""

    name = "signals"
    inputs: tuple[str, ...] = (CHAT_EVENTS,)

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
        self._timers: dict[SourcePartition, Timers] = {}
        self._windows: dict[SourcePartition, set[str]] = {}
        self._quiet_ms = None if self.config.quiet_partition_s is None else int(self.config.quiet_partition_s * 1000)
        self._last_seen: dict[
            SourcePartition, tuple[int, int]
        ] = {}  # source -> (last offset, wall ms it was first seen)
        self._metrics = processor_metrics()
        self._latest_window: dict[str, tuple[int, dict[str, float]]] = {}
        self._latest_version_window: dict[tuple[str, str], tuple[int, dict[str, float]]] = {}

    # -- restore ---------------------------------------------------------------------
    def _on_restore(self, source: SourcePartition, state: PartitionState) -> None:
        timers = self._timers[source] = Timers()
        self._windows[source] = {k for k in state.entries if k.startswith("w|")}
        meta = state.meta
        meta.setdefault("cu", 0)
        meta.setdefault("late", {})
        for key, sess in state.entries.items():
            if not key.startswith("s|"):
                continue
            if sess.get("end") is not None:
                timers.push(sess["end"] + self._grace + self._cw, "gc", key)
                continue
            if sess.get("pe") is not None:
                timers.push(sess["pe"][0] + self._grace, "end", key)
            timers.push(sess["lt"] + self._idle + self._grace, "idle", key)
            for req, resp in sess["r"].items():
                timers.push(resp["ts"] + self._cw + self._grace, "resp", key, req)

    def _on_drop(self, source: SourcePartition) -> None:
        self._timers.pop(source, None)
        self._windows.pop(source, None)
        self._last_seen.pop(source, None)

    # -- records ---------------------------------------------------------------------
    def _apply(self, source: SourcePartition, state: PartitionState, key: str | None, value: bytes) -> list[Output]:
        event = parse_chat_event(value, self._limits)
        t = to_ms(event.ts)
        out: list[Output] = []
        meta = state.entries[META]
        skey = "s|" + event.conversation_id
        sess = state.entries.get(skey)
        if t < meta["cu"]:  # its window is closed: count it, keep applying it to non-window state
            self._metrics.late_events.labels(self.name).inc()
            arm = sess.get("arm") if sess else getattr(event, "arm", None)
            bump(meta["late"], arm or "unknown")
        if sess is None:
            sess = {
                "u": event.user_id,
                "cid": event.conversation_id,
                "ch": event.character_id,
                "arm": None,
                "mv": None,
                "st": None,
                "ft": t,
                "lt": t,
                "m": {},
                "r": {},
                "fb": {},
                "done": {},
                "eng": [],
                "nr": 0,
                "end": None,
            }
            state.put(skey, sess)
            self._timers[source].push(t + self._idle + self._grace, "idle", skey)
        else:
            state.dirty.add(skey)
        if isinstance(event, UserMessageEvent):
            self._on_message(source, state, skey, sess, event, t, out)
        elif isinstance(event, ModelResponseEvent):
            self._on_response(source, state, skey, sess, event, t, out)
        elif isinstance(event, UserFeedbackEvent):
            self._on_feedback(sess, event)
        elif isinstance(event, SessionStartedEvent):
            if sess["st"] is None and sess["end"] is None:
                sess["st"] = t
                self._learn_arm(source, state, sess, event.arm, event.model_version)
                w = self._window(source, state, event.arm, sess["mv"], t)
                if w is not None:
                    w["ua"][sess["u"]] = w["uact"][sess["u"]] = 1
        elif isinstance(event, SessionEndedEvent):
            self._on_end_event(source, state, skey, sess, t, event.reason, out)
        if t > meta["wm"]:
            meta["wm"] = t
            heap = self._timers[source].heap
            # Most events fire nothing: check before paying for the call.
            if (heap and heap[0][0] <= t) or ((t - self._grace) // self._w) * self._w > meta["cu"]:
                self._fire(source, state, t, out)
        return out

    def _learn_arm(
        self, source: SourcePartition, state: PartitionState, sess: dict[str, Any], arm: str, mv: str
    ) -> None:
        if sess["arm"] is not None:
            return
        sess["arm"], sess["mv"] = arm, mv
        for ts in sess["eng"]:
            w = self._window(source, state, arm, mv, ts)
            if w is not None:
                w["ue"][sess["u"]] = w["uact"][sess["u"]] = 1
        sess["eng"] = []

    def _on_message(
        self,
        source: SourcePartition,
        state: PartitionState,
        skey: str,
        sess: dict[str, Any],
        event: UserMessageEvent,
        t: int,
        out: list[Output],
    ) -> None:
        turn = str(event.turn)
        pending_end = sess.get("pe")
        if sess["end"] is not None or turn in sess["m"] or (pending_end is not None and t > pending_end[0]):
            self._metrics.dropped.labels(self.name, "message_after_end_or_duplicate").inc()
            return
        sess["m"][turn] = t
        if t > sess["lt"]:
            sess["lt"] = t  # the session's idle timer re-arms itself from this
        if sess["arm"] is None:
            sess["eng"].append(t)
        else:
            w = self._window(source, state, sess["arm"], sess["mv"], t)
            if w is not None:
                w["ue"][sess["u"]] = w["uact"][sess["u"]] = 1
        # Replies to the previous turn (a regeneration adds one), oldest first; replies stamped
        # in the same millisecond keep their arrival order (dicts, also restored ones, keep it).
        prev = [(r["ts"], i, req) for i, (req, r) in enumerate(sess["r"].items()) if r["t"] == event.turn - 1]
        if prev:
            latest = max(prev)[2]
            for _, _, req in sorted(prev):
                resp = sess["r"][req]
                continued = req == latest and t - resp["ts"] <= self._cw
                self._finalise(source, state, sess, req, continued, "next_message", t, out)

    def _on_response(
        self,
        source: SourcePartition,
        state: PartitionState,
        skey: str,
        sess: dict[str, Any],
        event: ModelResponseEvent,
        t: int,
        out: list[Output],
    ) -> None:
        req = event.request_id
        if req in sess["r"] or req in sess["done"]:
            self._metrics.dropped.labels(self.name, "duplicate_response").inc()
            return
        self._learn_arm(source, state, sess, event.arm, event.model_version)
        w = self._window(source, state, event.arm, event.model_version, t)
        if w is not None:  # the user is present on the arm in this window, engaged or not
            w["uact"][sess["u"]] = 1
        sess["nr"] += 1
        turn = str(event.turn)
        sess["r"][req] = {
            "t": event.turn,
            "ts": t,
            "mv": event.model_version,
            "arm": event.arm,
            "if": follows_instructions(event.text, event.instructions),
            "v": not check_policy(event.text, self._policy).passed,
            "lat": event.latency_ms,
            "fb": sess["fb"].pop(turn, []),
        }
        if t > sess["lt"]:
            sess["lt"] = t
        nxt = sess["m"].get(str(event.turn + 1))
        if nxt is not None:
            self._finalise(source, state, sess, req, nxt - t <= self._cw, "next_message", nxt, out)
        elif sess["end"] is not None:
            self._finalise(source, state, sess, req, False, "session_ended", sess["end"], out)
        else:
            self._timers[source].push(t + self._cw + self._grace, "resp", skey, req)

    def _on_feedback(self, sess: dict[str, Any], event: UserFeedbackEvent) -> None:
        pending = [(r["ts"], req) for req, r in sess["r"].items() if r["t"] == event.turn]
        kind = event.kind.value
        if pending:
            fb = sess["r"][max(pending)[1]]["fb"]
        elif str(event.turn) in sess["done"].values() or sess["end"] is not None:
            self._metrics.dropped.labels(self.name, "feedback_after_outcome").inc()
            return
        else:
            fb = sess["fb"].setdefault(str(event.turn), [])
        if kind not in fb:
            fb.append(kind)

    def _on_end_event(
        self,
        source: SourcePartition,
        state: PartitionState,
        skey: str,
        sess: dict[str, Any],
        t: int,
        reason: str,
        out: list[Output],
    ) -> None:
        """Hold the end until the watermark passes it + grace (see the module docstring);
        an end that is already that late closes the session at once."""
        if sess["end"] is not None or sess.get("pe") is not None:
            return  # the first end counts
        if t + self._grace <= state.meta["wm"]:
            self._on_end(source, state, skey, sess, t, reason, out)
            return
        sess["pe"] = [t, reason]
        self._timers[source].push(t + self._grace, "end", skey)

    def _on_end(
        self,
        source: SourcePartition,
        state: PartitionState,
        skey: str,
        sess: dict[str, Any],
        t: int,
        reason: str,
        out: list[Output],
    ) -> None:
        for _, req in sorted((r["ts"], req) for req, r in sess["r"].items()):
            self._finalise(source, state, sess, req, False, "session_ended", t, out)
        self._summarise(source, state, sess, max(t, sess["lt"]), t, reason, out)
        # Keep a tombstone so late events of an ended conversation do not open a new session.
        state.put(
            skey,
            {
                "u": sess["u"],
                "cid": sess["cid"],
                "ch": sess["ch"],
                "arm": sess["arm"],
                "mv": sess["mv"],
                "st": sess["st"],
                "ft": sess["ft"],
                "lt": sess["lt"],
                "m": {},
                "r": {},
                "fb": {},
                "done": sess["done"],
                "eng": [],
                "nr": sess["nr"],
                "end": t,
            },
        )
        self._timers[source].push(t + self._grace + self._cw, "gc", skey)

    def _summarise(
        self,
        source: SourcePartition,
        state: PartitionState,
        sess: dict[str, Any],
        ended: int,
        decided: int,
        reason: str,
        out: list[Output],
    ) -> None:
        if sess["arm"] is None:  # never saw session_started nor a reply: no arm to attribute it to
            self._metrics.dropped.labels(self.name, "session_without_arm").inc()
            return
        started = sess["st"] if sess["st"] is not None else sess["ft"]
        turns = len(sess["m"])
        ended = max(ended, started)
        # Built as JSON directly (same document SessionSummary.model_dump_json gives): hot path.
        out.append(
            Output(
                ENGAGEMENT_SIGNALS,
                sess["u"],
                dumps(
                    {
                        "kind": "session_summary",
                        "schema_version": SCHEMA_VERSION,
                        "user_id": sess["u"],
                        "conversation_id": sess["cid"],
                        "character_id": sess["ch"],
                        "arm": sess["arm"],
                        "model_version": sess["mv"],
                        "started_ts": iso_ms(started),
                        "ended_ts": iso_ms(ended),
                        "user_turns": turns,
                        "responses": sess["nr"],
                        "duration_s": (ended - started) / 1000,
                        "end_reason": reason,
                    }
                ),
            )
        )
        w = self._window(source, state, sess["arm"], sess["mv"], decided)
        if w is not None:
            w["s"] += 1
            w["ut"] += turns
            w["ut2"] += turns * turns

    def _finalise(
        self,
        source: SourcePartition,
        state: PartitionState,
        sess: dict[str, Any],
        req: str,
        continued: bool,
        by: str,
        decided: int,
        out: list[Output],
    ) -> None:
        resp = sess["r"].pop(req)
        sess["done"][req] = str(resp["t"])
        out.append(
            Output(
                ENGAGEMENT_SIGNALS,
                sess["u"],
                dumps(
                    {
                        "kind": "response_outcome",
                        "schema_version": SCHEMA_VERSION,
                        "user_id": sess["u"],
                        "conversation_id": sess["cid"],
                        "character_id": sess["ch"],
                        "turn": resp["t"],
                        "request_id": req,
                        "model_version": resp["mv"],
                        "arm": resp["arm"],
                        "response_ts": iso_ms(resp["ts"]),
                        "continued": continued,
                        "feedback": resp["fb"],
                        "instruction_following": resp["if"],
                        "violation": resp["v"],
                        "latency_ms": float(resp["lat"]),
                        "finalized_by": by,
                    }
                ),
            )
        )
        w = self._window(source, state, resp["arm"], resp["mv"], decided)
        if w is not None:
            w["r"] += 1
            w["c"] += continued
            w["if"] += resp["if"]
            w["v"] += resp["v"]
            w["lat"] += resp["lat"]
            w["lb"][_bucket(resp["lat"])] += 1

    # -- windows and timers ----------------------------------------------------------------
    def _window(
        self, source: SourcePartition, state: PartitionState, arm: str, mv: str, ts: int
    ) -> dict[str, Any] | None:
        """The open window of ``ts`` (created on first use), or None when it is already closed."""
        start = ts - ts % self._w
        if start < state.entries[META]["cu"]:
            return None  # the event was counted as late on arrival
        key = f"w|{arm}|{mv}|{start}"
        window = state.entries.get(key)
        if window is None:
            window = state.entries[key] = _new_window()
            self._windows[source].add(key)
        state.dirty.add(key)
        return window

    def _fire(self, source: SourcePartition, state: PartitionState, wm: int, out: list[Output]) -> None:
        timers = self._timers[source]
        heap = timers.heap
        while heap and heap[0][0] <= wm:
            due, kind, skey, req = heappop(heap)
            sess = state.entries.get(skey)
            if sess is None:
                continue
            if kind == "resp":
                resp = sess["r"].get(req)
                if resp is not None and resp["ts"] + self._cw + self._grace == due:
                    state.touch(skey)
                    self._finalise(source, state, sess, req, False, "timer", resp["ts"] + self._cw, out)
            elif (
                kind == "end"
                and sess["end"] is None
                and sess.get("pe") is not None
                and sess["pe"][0] + self._grace == due
            ):
                state.touch(skey)
                self._on_end(source, state, skey, sess, sess["pe"][0], sess["pe"][1], out)
            elif kind == "idle" and sess["end"] is None and sess.get("pe") is None:
                # One idle timer per open session, re-armed here when the session was active
                # since it was set (cheaper than one timer per event).
                idle_due = sess["lt"] + self._idle + self._grace
                if idle_due > due:
                    timers.push(idle_due, "idle", skey)
                else:
                    for _, r in sorted((r["ts"], r_id) for r_id, r in sess["r"].items()):
                        self._finalise(source, state, sess, r, False, "timer", sess["lt"] + self._idle, out)
                    self._summarise(source, state, sess, sess["lt"], sess["lt"] + self._idle, "idle_timeout", out)
                    state.delete(skey)
            elif kind == "gc" and sess["end"] is not None and sess["end"] + self._grace + self._cw == due:
                state.delete(skey)
        closed_until = ((wm - self._grace) // self._w) * self._w
        if closed_until > state.entries[META]["cu"]:
            self._close_windows(source, state, closed_until, out)

    def _close_windows(
        self, source: SourcePartition, state: PartitionState, closed_until: int, out: list[Output]
    ) -> None:
        """Emit and forget the windows that end before ``closed_until``."""
        meta = state.meta
        meta["cu"] = closed_until
        keys = self._windows[source]
        due = sorted((int(k.rsplit("|", 1)[1]), k) for k in keys if int(k.rsplit("|", 1)[1]) < closed_until)
        for start, key in due:
            _, arm, mv, _ = key.split("|", 3)
            w = state.entries[key]
            late = meta["late"].pop(arm, 0)
            agg = ArmWindowAggregate.model_construct(
                arm=arm,
                model_version=mv,
                window_start=from_ms(start),
                window_s=self.config.window_s,
                partition=source.partition,
                sessions=w["s"],
                users_assigned=len(w["ua"]),
                users_engaged=len(w["ue"]),
                users_active=len(w.get("uact", w["ue"])),
                user_turns=w["ut"],
                user_turns_sq=w["ut2"],
                responses=w["r"],
                continued=w["c"],
                instruction_following=w["if"],
                violations=w["v"],
                latency_ms_sum=w["lat"],
                latency_buckets=tuple(w["lb"]),
                late_events=late,
            )
            out.append(Output(ENGAGEMENT_SIGNALS, arm, agg.model_dump_json().encode()))
            self._observe(agg, start)
            state.delete(key)
            keys.discard(key)

    def _observe(self, agg: ArmWindowAggregate, start: int) -> None:
        """Export the latest closed window per arm, summed over this process's partitions."""
        self._observe_version(agg, start)
        prev = self._latest_window.get(agg.arm)
        if prev is None or prev[0] < start:
            prev = (start, {})
            self._latest_window[agg.arm] = prev
        elif prev[0] > start:
            return
        sums = prev[1]
        for field in (
            "sessions",
            "users_assigned",
            "users_engaged",
            "users_active",
            "user_turns",
            "responses",
            "continued",
            "instruction_following",
            "violations",
        ):
            sums[field] = sums.get(field, 0) + getattr(agg, field)
        gauge = self._metrics.window_stat
        for field, value in sums.items():
            gauge.labels(agg.arm, field).set(value)
        if sums["responses"]:
            gauge.labels(agg.arm, "continue_rate").set(sums["continued"] / sums["responses"])
            gauge.labels(agg.arm, "violation_rate").set(sums["violations"] / sums["responses"])
        if sums["sessions"]:
            gauge.labels(agg.arm, "mean_depth").set(sums["user_turns"] / sums["sessions"])
        if sums["users_active"]:
            gauge.labels(agg.arm, "breadth").set(sums["users_engaged"] / sums["users_active"])

    def _observe_version(self, agg: ArmWindowAggregate, start: int) -> None:
        """The per-response rates again, per model version: guardrails are judged per version."""
        key = (agg.arm, agg.model_version)
        prev = self._latest_version_window.get(key)
        if prev is None or prev[0] < start:
            prev = (start, {})
            self._latest_version_window[key] = prev
        elif prev[0] > start:
            return
        for field in ("responses", "instruction_following", "violations"):
            prev[1][field] = prev[1].get(field, 0) + getattr(agg, field)
            self._metrics.window_version_stat.labels(agg.arm, agg.model_version, field).set(prev[1][field])

    def _advance(self, source: SourcePartition, state: PartitionState, now_ms: int) -> list[Output]:
        """Quiet partitions (``quiet_partition_s``): event time follows the wall clock once no
        record arrived for that long, so the last windows close without waiting for traffic."""
        if self._quiet_ms is None:
            return []
        offset = state.meta["offset"]
        seen = self._last_seen.get(source)
        if seen is None or seen[0] != offset:
            self._last_seen[source] = (offset, now_ms)
            return []
        if now_ms - seen[1] < self._quiet_ms:
            return []
        return self._advance_to(source, state, now_ms - self._quiet_ms)

    def open_windows(self, source: SourcePartition) -> Mapping[str, Any]:
        """Current (not yet closed) window partials of ``source``, by entry key (for inspection)."""
        state = self._parts.get(source)
        return {} if state is None else {k: state.entries[k] for k in sorted(self._windows.get(source, ()))}
