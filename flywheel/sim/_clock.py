"""Simulated time: days pass in seconds of wall time, event times stay in the past."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

DAY_S = 86_400.0


class SimClock:
    """Current simulated time, moved forward only by the simulator's scheduler.

    Thread-safe to read: other parts of an in-process deployment may use ``now`` as their
    clock so that every event of the run shares one timeline.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware (UTC)")
        self._start = start.astimezone(UTC)
        self._now = self._start
        self._lock = threading.Lock()

    @classmethod
    def days_ago(cls, days: float) -> "SimClock":
        """Start ``days`` days before now, on a whole minute (readable timestamps)."""
        start = (datetime.now(UTC) - timedelta(days=days)).replace(second=0, microsecond=0)
        return cls(start)

    @property
    def start(self) -> datetime:
        return self._start

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, t: datetime) -> None:
        """Move forward to ``t``; never backwards."""
        with self._lock:
            if t > self._now:
                self._now = t

    def at(self, offset_s: float) -> datetime:
        """Simulated time ``offset_s`` seconds after the start."""
        return self._start + timedelta(seconds=offset_s)

    def offset_s(self, t: datetime) -> float:
        return (t - self._start).total_seconds()

    def day(self, t: datetime | None = None) -> int:
        """0-based simulated day of ``t`` (default: now)."""
        return int(self.offset_s(t or self.now()) // DAY_S)
