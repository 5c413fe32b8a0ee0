"""Simulated time. Two clocks share one interface:

- ``SimClock`` (virtual): time moves only when the simulator says so; days pass in
  milliseconds and a run is reproducible. Every part that stamps events must read this
  clock (unit tests, or an in-process deployment that takes a clock).
- ``WallClock`` (compressed real time): events carry the real time, as when a gateway
  stamps them itself; simulated durations (think times, the daily peak) are divided by
  ``time_scale``, and a new simulated day starts as soon as the last one's sessions end.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

DAY_S = 86_400.0


class Clock(Protocol):
    realtime: bool

    def now(self) -> datetime: ...

    def duration(self, simulated_s: float) -> timedelta:
        """How long ``simulated_s`` simulated seconds last on this clock."""

    def day_start(self, day: int) -> datetime:
        """When simulated day ``day`` (0-based) begins."""

    async def wait_until(self, t: datetime) -> None:
        """Let time reach ``t``."""


class SimClock:
    """Virtual time, moved forward only by the simulator's scheduler. Thread-safe to read."""

    realtime = False

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware (UTC)")
        self.start = start.astimezone(UTC)
        self._now = self.start
        self._lock = threading.Lock()

    @classmethod
    def days_ago(cls, days: float) -> SimClock:
        """Start ``days`` days before now (event times must never lie in the future)."""
        return cls((datetime.now(UTC) - timedelta(days=days)).replace(second=0, microsecond=0))

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, t: datetime) -> None:
        """Move forward to ``t``; never backwards."""
        with self._lock:
            if t > self._now:
                self._now = t

    def duration(self, simulated_s: float) -> timedelta:
        return timedelta(seconds=simulated_s)

    def day_start(self, day: int) -> datetime:
        return self.start + timedelta(seconds=day * DAY_S)

    async def wait_until(self, t: datetime) -> None:
        self.advance_to(t)


class WallClock:
    """Real time, with simulated durations compressed by ``time_scale``."""

    realtime = True

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale ({time_scale}) must be > 0")
        self.time_scale = time_scale
        self.start = datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def duration(self, simulated_s: float) -> timedelta:
        return timedelta(seconds=simulated_s / self.time_scale)

    def day_start(self, day: int) -> datetime:
        return self.now()

    async def wait_until(self, t: datetime) -> None:
        delay = (t - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
