"""The producer SDK: how applications put chat events on the bus."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from schemas import (
    CHAT_EVENTS,
    DEFAULT_TOPICS,
    ChatEvent,
    ChatEventBase,
    SchemaError,
    Topics,
    ValidationLimits,
    parse_chat_event,
)
from schemas._base import DEFAULT_LIMITS
from streams.bus import Producer
from streams.dlq import send_to_dlq


class ChatEventProducer:
    """Validates and sends chat events keyed by ``user_id``. Thread-safe; flushes on close.

    Usage::

        with ChatEventProducer(bus.producer()) as events:
            events.emit(UserMessageEvent(...))
    """

    def __init__(self, producer: Producer, topic: str = CHAT_EVENTS, limits: ValidationLimits = DEFAULT_LIMITS) -> None:
        self._producer = producer
        self._topic = topic
        self._limits = limits
        self._lock = threading.Lock()
        self.sent = 0

    def emit(self, event: ChatEventBase | dict[str, Any]) -> None:
        """Validate ``event`` (a model or a dict) and queue it.

        Raises:
            SchemaError: the event breaks the contract; nothing was sent.
            StreamError: the bus refused it.
        """
        if isinstance(event, BaseModel):
            # Re-validate: a model built with model_construct() or mutated skips validation.
            raw = event.model_dump_json().encode()
        else:
            raw = json.dumps(event, default=str).encode()
        validated = parse_chat_event(raw, self._limits)
        self._send(validated, raw)

    def emit_json(self, raw: bytes) -> ChatEvent:
        """Validate raw JSON bytes and send them unchanged; returns the parsed event."""
        event = parse_chat_event(raw, self._limits)
        self._send(event, raw)
        return event

    def _send(self, event: ChatEvent, raw: bytes) -> None:
        with self._lock:
            self._producer.produce(self._topic, raw, key=event.user_id)
            self.sent += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ChatEventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ProduceSummary:
    sent: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)


def produce_lines(
    lines: Iterable[bytes],
    producer: Producer,
    source_name: str,
    limits: ValidationLimits = DEFAULT_LIMITS,
    topics: Topics = DEFAULT_TOPICS,
    max_reported: int = 1000,
) -> ProduceSummary:
    """Send each JSONL line as a chat event; invalid lines go to the DLQ with the reason.

    Blank lines are skipped. ``rejections`` keeps (line number, reason) of the first
    ``max_reported`` bad lines.
    """
    events = ChatEventProducer(producer, topic=topics.chat_events, limits=limits)
    summary = ProduceSummary()
    for number, line in enumerate(lines, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            events.emit_json(raw)
            summary.sent += 1
        except SchemaError as exc:
            summary.rejected += 1
            if len(summary.rejections) < max_reported:
                summary.rejections.append((number, str(exc)))
            send_to_dlq(
                producer, raw, _best_effort_key(raw), exc, f"file:{source_name}:{number}", topic=topics.chat_events_dlq
            )
    events.flush()
    return summary


def _best_effort_key(raw: bytes) -> str | None:
    """Keep the original key on the DLQ when the bad line still names a user."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    user = doc.get("user_id") if isinstance(doc, dict) else None
    return user if isinstance(user, str) else None
