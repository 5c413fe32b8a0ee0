"""Dead letters: the original bytes, unchanged, with the reason and source in headers
(the Kafka Connect convention), so nothing bad is lost and everything can be replayed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from schemas import CHAT_EVENTS_DLQ, SchemaError
from streams.bus import Record

REASON = "dlq.reason"
FIELD = "dlq.field"
ERROR_TYPE = "dlq.error_type"
SOURCE = "dlq.source"


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message as read back from the DLQ topic."""

    original: bytes
    key: str | None
    reason: str
    field: str
    error_type: str
    source: str

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        h = record.headers
        return cls(
            record.value,
            record.key,
            h.get(REASON, b"").decode(),
            h.get(FIELD, b"").decode(),
            h.get(ERROR_TYPE, b"").decode(),
            h.get(SOURCE, b"").decode(),
        )


class MessageSink(Protocol):
    """Where a dead letter is queued: a bus ``Producer``, or a runner's outputs held in
    memory while a commit is in flight (only ``produce`` is needed)."""

    def produce(
        self, topic: str, value: bytes, key: str | None = None, headers: Mapping[str, bytes] | None = None
    ) -> None: ...


def error_reason_label(error: Exception) -> str:
    """A low-cardinality label for metrics: the field for schema errors, else the type."""
    if isinstance(error, SchemaError):
        return f"schema:{error.field.split('.')[0] or 'document'}"
    return type(error).__name__


def send_to_dlq(
    producer: MessageSink, original: bytes, key: str | None, error: Exception, source: str, topic: str = CHAT_EVENTS_DLQ
) -> None:
    """Queue ``original`` on the DLQ with ``error`` as its reason.

    Args:
        source: where it came from, e.g. ``chat.events/3/1042`` or ``file:events.jsonl:17``.
    """
    field = error.field if isinstance(error, SchemaError) else ""
    reason = error.reason if isinstance(error, SchemaError) else str(error)
    headers = {
        REASON: reason.encode()[:4096],
        FIELD: field.encode(),
        ERROR_TYPE: type(error).__name__.encode(),
        SOURCE: source.encode(),
    }
    producer.produce(topic, original, key=key, headers=headers)
