"""The producer SDK: how applications put chat events on the bus."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydantic import BaseModel

from schemas import (
    CHAT_EVENTS,
    DEFAULT_TOPICS,
    ChatEvent,
    ChatEventBase,
    MessageTooLargeError,
    SchemaError,
    StreamError,
    Topics,
    ValidationLimits,
    parse_chat_event,
)
from schemas._base import DEFAULT_LIMITS
from streams._lines import Line, read_lines
from streams.bus import Producer
from streams.dlq import TRUNCATED, send_to_dlq
from streams.dlq_config import DeadLetterConfig


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
            MessageTooLargeError: valid, but larger than the bus accepts; nothing was sent.
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
    """What ``produce_lines`` did with each line: ``lines == sent + rejected + blank``.

    Attributes:
        rejected: lines dead-lettered (invalid, or refused by the bus for their size).
        truncated: of those, dead letters cut to fit ``max_bytes`` (their size and sha256 in headers).
        rejections: (line number, reason) of the first ``max_reported`` rejected lines.
    """

    lines: int = 0
    sent: int = 0
    rejected: int = 0
    blank: int = 0
    truncated: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)


class ProduceInterruptedError(StreamError):
    """The bus failed (not a line): ``produce_lines`` stopped after ``summary.lines`` lines.

    Attributes:
        summary: what was done up to the failure; lines after it were not read.
    """

    def __init__(self, cause: StreamError, summary: ProduceSummary) -> None:
        self.summary = summary
        super().__init__(
            f"{cause} (after {summary.lines} lines: sent {summary.sent}, rejected {summary.rejected})",
            topic=cause.topic,
            retriable=cause.retriable,
        )


MAX_LINE_BYTES = 64 << 20
"""Longest line ``produce_lines`` holds in memory; a longer one is dead-lettered (its first
``max_bytes``, with the whole line's size and sha256) without being parsed."""

_REPORTED_REASON_CHARS = 300


def produce_lines(
    lines: Iterable[bytes] | BinaryIO,
    producer: Producer,
    source_name: str,
    limits: ValidationLimits = DEFAULT_LIMITS,
    topics: Topics = DEFAULT_TOPICS,
    max_reported: int = 1000,
    dlq: DeadLetterConfig | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ProduceSummary:
    """Send each JSONL line as a chat event; every other line goes to the DLQ with the reason.

    Every line is accounted for (``ProduceSummary``): no line, however large, malformed or
    not UTF-8, stops the run. A valid event that the bus refuses for its size is
    dead-lettered too. Blank lines are skipped. ``lines`` is a binary stream (read with a
    bound of ``max_line_bytes`` per line held in memory) or an iterable of lines.

    Raises:
        ProduceInterruptedError: the bus failed; it carries the summary up to the failure.
    """
    max_bytes = (dlq or DeadLetterConfig()).max_bytes
    events = ChatEventProducer(producer, topic=topics.chat_events, limits=limits)
    summary = ProduceSummary()
    try:
        for line in read_lines(lines, max_line_bytes):
            summary.lines += 1
            raw = line.data
            if line.whole and not raw.strip():
                summary.blank += 1
                continue
            error = _send_line(events, line, max_line_bytes)
            if error is None:
                summary.sent += 1
                continue
            summary.rejected += 1
            if len(summary.rejections) < max_reported:
                summary.rejections.append((line.number, _shorten(str(error))))
            letter = send_to_dlq(
                producer,
                raw,
                _best_effort_key(raw) if line.whole else None,
                error,
                f"file:{source_name}:{line.number}",
                topic=topics.chat_events_dlq,
                max_bytes=max_bytes,
                original_size_bytes=line.size_bytes,
                original_sha256=line.sha256,
            )
            summary.truncated += TRUNCATED in letter.headers
        events.flush()
    except StreamError as exc:
        raise ProduceInterruptedError(exc, summary) from exc
    return summary


def _send_line(events: ChatEventProducer, line: Line, max_line_bytes: int) -> Exception | None:
    """Send one line; the reason it was refused, or None when it was sent.

    A bus failure other than the message's size is not the line's fault: it propagates."""
    if not line.whole:
        return SchemaError("", f"line of {line.size_bytes} bytes is longer than the {max_line_bytes} read")
    try:
        events.emit_json(line.data)
    except (SchemaError, MessageTooLargeError) as exc:
        return exc
    except StreamError:
        raise
    except Exception as exc:  # odd input must not stop the run: it is dead-lettered with its error type
        return exc
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= _REPORTED_REASON_CHARS else text[:_REPORTED_REASON_CHARS] + "…"


def _best_effort_key(raw: bytes) -> str | None:
    """Keep the original key on the DLQ when the bad line still names a user."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        return None
    user = doc.get("user_id") if isinstance(doc, dict) else None
    return user if isinstance(user, str) else None
