"""The window half of the signals processor: per partition, the open WindowState
partials (entries ``w|<arm>|<model version>|<start ms>``), what counts in them, and
closing them into ``ArmWindowAggregate`` messages once the watermark passes window end
+ grace. A window already closed counts nothing more (the event was counted as late)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

from schemas import ENGAGEMENT_SIGNALS, LATENCY_BUCKETS_MS, ArmWindowAggregate
from streams.processors._base import Output, PartitionState, SourcePartition
from streams.processors._events import from_ms
from streams.processors._metrics import WindowGauges
from streams.processors._signals_state import ReplyState, SessionTotals, SignalsMeta, WindowState

State = PartitionState[SignalsMeta]
_N_BUCKETS = len(LATENCY_BUCKETS_MS)


def latency_bucket(latency_ms: float) -> int:
    """Index of the first bucket bound >= latency (the last bucket takes the rest)."""
    return min(bisect_left(LATENCY_BUCKETS_MS, latency_ms), _N_BUCKETS - 1)


class ArmWindows:
    """Open window partials of every owned partition; ``window_s`` and ``grace_ms`` are
    the processor's settings."""

    def __init__(self, window_s: int, grace_ms: int, gauges: WindowGauges) -> None:
        self._window_s = window_s
        self._w = window_s * 1000
        self._grace = grace_ms
        self._gauges = gauges
        self._open: dict[SourcePartition, dict[str, WindowState]] = {}

    def restore(self, source: SourcePartition, state: State) -> None:
        self._open[source] = {k: w for k, w in state.entries.items() if k.startswith("w|")}

    def drop(self, source: SourcePartition) -> None:
        self._open.pop(source, None)

    def open(self, source: SourcePartition) -> Mapping[str, WindowState]:
        return dict(sorted(self._open.get(source, {}).items()))

    # -- what counts ---------------------------------------------------------------------
    def window(self, source: SourcePartition, state: State, arm: str, mv: str, ts: int) -> WindowState | None:
        """The open window of ``ts`` (created on first use), or None when it is already closed."""
        start = ts - ts % self._w
        if start < state.meta.closed_until_ms:
            return None  # the event was counted as late on arrival
        key = f"w|{arm}|{mv}|{start}"
        window: WindowState | None = state.entries.get(key)
        if window is None:
            window = state.entries[key] = self._open[source][key] = WindowState(arm, mv, start)
        state.dirty.add(key)
        return window

    def reply_decided(
        self,
        source: SourcePartition,
        state: State,
        reply: ReplyState,
        continued: bool,
        decided_ms: int,
        covariate: float,
        session: SessionTotals | None,
    ) -> None:
        """A reply's outcome, in the window of the moment it was decided; added to
        ``session``'s totals too (None: the reply is not on the session's arm and version)."""
        bucket = latency_bucket(reply.latency_ms)
        if session is not None:
            session.replies += 1
            session.continued += continued
            session.violations += reply.violation
            session.instruction_following += reply.instruction_following
            session.latency_buckets[bucket] += 1
            session.covariate += covariate
        w = self.window(source, state, reply.arm, reply.model_version, decided_ms)
        if w is not None:
            counts = w.counters
            counts.responses += 1
            counts.continued += continued
            counts.instruction_following += reply.instruction_following
            counts.violations += reply.violation
            counts.latency_ms_sum += reply.latency_ms
            counts.latency_buckets[bucket] += 1
            counts.covariate_sum += covariate

    def session_ended(
        self,
        source: SourcePartition,
        state: State,
        arm: str,
        mv: str,
        turns: int,
        decided_ms: int,
        totals: SessionTotals,
    ) -> None:
        """A session of ``turns`` user turns, in the window of its end, with its replies'
        per-session sums (each session adds its squares once: they add up across windows)."""
        w = self.window(source, state, arm, mv, decided_ms)
        if w is not None:
            counts = w.counters
            counts.sessions += 1
            counts.user_turns += turns
            counts.user_turns_sq += turns * turns
            n, c, v, f, a = (
                totals.replies,
                totals.continued,
                totals.violations,
                totals.instruction_following,
                totals.covariate,
            )
            counts.session_replies += n
            counts.session_replies_sq += n * n
            counts.session_continued += c
            counts.session_continued_sq += c * c
            counts.session_continued_x_replies += c * n
            counts.session_violations += v
            counts.session_violations_sq += v * v
            counts.session_violations_x_replies += v * n
            counts.session_instruction_following += f
            counts.session_instruction_following_sq += f * f
            counts.session_instruction_following_x_replies += f * n
            counts.session_covariate += a
            counts.session_covariate_sq += a * a
            counts.session_covariate_x_replies += a * n
            counts.session_covariate_x_continued += a * c
            tail = 0
            for b in range(_N_BUCKETS - 1, -1, -1):  # tail[b] = replies in buckets after b
                counts.session_latency_tail[b] += tail
                counts.session_latency_tail_sq[b] += tail * tail
                counts.session_latency_tail_x_replies[b] += tail * n
                tail += totals.latency_buckets[b]

    # -- closing -------------------------------------------------------------------------
    def close(self, source: SourcePartition, state: State, wm: int, out: list[Output]) -> None:
        """Emit and forget the windows that end before watermark ``wm`` - grace."""
        closed_until = ((wm - self._grace) // self._w) * self._w
        meta = state.meta
        if closed_until <= meta.closed_until_ms:
            return
        meta.closed_until_ms = closed_until
        windows = self._open[source]
        for start, key in sorted((w.start_ms, k) for k, w in windows.items() if w.start_ms < closed_until):
            w = windows.pop(key)
            counts = w.counters
            counts.users_assigned, counts.users_engaged = len(w.assigned), len(w.engaged)
            counts.users_active = len(w.active)
            counts.late_events = meta.late_events.pop(w.arm, 0)
            agg = ArmWindowAggregate.trusted(
                arm=w.arm,
                model_version=w.model_version,
                window_start=from_ms(start),
                window_s=self._window_s,
                partition=source.partition,
                **counts.as_fields(),
            )
            out.append(Output(ENGAGEMENT_SIGNALS, w.arm, agg.to_json_bytes()))
            self._gauges.observe(w.arm, w.model_version, start, counts)
            state.delete(key)
