"""Small helpers shared by the chat-event processors: time, timers, windows."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic_core import to_json

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(ts: datetime) -> int:
    """Exact integer milliseconds (no float rounding)."""
    return (ts - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@lru_cache(maxsize=64)
def _iso_day(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).date().isoformat()


def iso_ms(ms: int) -> str:
    """The JSON form pydantic gives a UTC datetime ("…T12:00:00Z" or "…T12:00:00.123000Z").

    Every output carries several: the date is formatted once per day (cached) and the
    time of day by hand, about half the cost of ``isoformat()`` per call.
    """
    day, milli = divmod(ms, 86_400_000)
    second, milli = divmod(milli, 1000)
    minute, second = divmod(second, 60)
    hour, minute = divmod(minute, 60)
    if milli:
        return f"{_iso_day(day)}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}000Z"
    return f"{_iso_day(day)}T{hour:02d}:{minute:02d}:{second:02d}Z"


def dumps(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, byte for byte as ``Message.to_json_bytes`` writes it (same serialiser)."""
    return to_json(doc)


class Timers:
    """Event-time timers of one partition: a heap of (due_ms, kind, key, arg).

    Timers are not persisted; processors rebuild them from their entries on restore.
    Entries are validated when they fire (lazy deletion), so a stale timer is harmless.
    Processors pop due timers from ``heap`` themselves (``heapq.heappop``): it runs once
    per event, and a method call there was a measurable share of the processor's time.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[int, str, str, str]] = []

    def push(self, due_ms: int, kind: str, key: str, arg: str = "") -> None:
        heapq.heappush(self.heap, (due_ms, kind, key, arg))

    def __len__(self) -> int:
        return len(self.heap)


def bump(counter: dict[str, Any], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by
