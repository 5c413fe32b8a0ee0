"""Small helpers shared by the chat-event processors: time, timers, windows."""

from __future__ import annotations

import heapq
import json
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(ts: datetime) -> int:
    """Exact integer milliseconds (no float rounding)."""
    return (ts - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def iso_ms(ms: int) -> str:
    """The JSON form pydantic gives a UTC datetime ("…T12:00:00Z" or "…T12:00:00.123000Z")."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat()[:-6] + "Z"  # drop "+00:00"


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as ``Message.to_json_bytes`` writes it."""
    return _encode(doc).encode()


class Timers:
    """Event-time timers of one partition: a heap of (due_ms, kind, key, arg).

    Timers are not persisted; processors rebuild them from their entries on restore.
    Entries are validated when they fire (lazy deletion), so a stale timer is harmless.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str, str]] = []

    def push(self, due_ms: int, kind: str, key: str, arg: str = "") -> None:
        heapq.heappush(self._heap, (due_ms, kind, key, arg))

    def pop_due(self, now_ms: int) -> tuple[int, str, str, str] | None:
        if self._heap and self._heap[0][0] <= now_ms:
            return heapq.heappop(self._heap)
        return None

    def __len__(self) -> int:
        return len(self._heap)


def bump(counter: dict[str, Any], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by
