"""Dead letters: the original bytes with the reason and source in headers (the Kafka
Connect convention), so nothing bad is lost and everything can be replayed.

A dead letter never breaks the bus's size limit: every header is capped, an over-long key
is cut, and an original whose letter would pass ``max_bytes`` is truncated to fit, with its
original size and sha256 in headers (``dlq.original_size_bytes``, ``dlq.original_sha256``,
``dlq.truncated``), so the full original can still be found and verified at its source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from schemas import CHAT_EVENTS_DLQ, MessageTooLargeError, MisroutedRecordError, SchemaError
from streams.bus import Record
from streams.dlq_config import DEFAULT_DLQ_MAX_BYTES, MIN_DLQ_MAX_BYTES

REASON = "dlq.reason"
FIELD = "dlq.field"
ERROR_TYPE = "dlq.error_type"
SOURCE = "dlq.source"
ORIGINAL_SIZE = "dlq.original_size_bytes"
ORIGINAL_SHA256 = "dlq.original_sha256"
TRUNCATED = "dlq.truncated"
"""What was cut to fit: ``value``, ``key`` or ``key,value``; absent when nothing was."""
ORIGINAL_KEY = "dlq.original_key"
"""The original key's bytes when they are not UTF-8 (the letter then has no key)."""

# Caps of the descriptive headers (UTF-8 bytes): a field path or a reason can quote the
# bad input (an unknown field's name), which can be as large as the input itself.
_HEADER_MAX_BYTES = {REASON: 4096, FIELD: 1024, ERROR_TYPE: 256, SOURCE: 1024}
KEY_MAX_BYTES = 1024
"""Longest key kept on a dead letter (valid keys are user ids of at most 256 characters)."""


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message as read back from the DLQ topic.

    ``original`` is the original bytes, or their first bytes when ``truncated``;
    ``original_size_bytes`` and ``original_sha256`` always describe the whole original.
    """

    original: bytes
    key: str | None
    reason: str
    field: str
    error_type: str
    source: str
    original_size_bytes: int = 0
    original_sha256: str = ""
    truncated: tuple[str, ...] = ()
    original_key: bytes = b""
    """The original key's bytes when they were not UTF-8 (``key`` is then None)."""

    @classmethod
    def from_record(cls, record: Record) -> DeadLetter:
        h = record.headers

        def text(name: str) -> str:
            return h.get(name, b"").decode("utf-8", "replace")

        truncated = tuple(part for part in text(TRUNCATED).split(",") if part)
        size = int(text(ORIGINAL_SIZE) or len(record.value))
        digest = text(ORIGINAL_SHA256) or hashlib.sha256(record.value).hexdigest()
        return cls(
            record.value,
            record.key,
            text(REASON),
            text(FIELD),
            text(ERROR_TYPE),
            text(SOURCE),
            size,
            digest,
            truncated,
            h.get(ORIGINAL_KEY, b""),
        )


class MessageSink(Protocol):
    """Where a dead letter is queued: a bus ``Producer``, or a runner's outputs held in
    memory while a commit is in flight (only ``produce`` is needed)."""

    def produce(
        self, topic: str, value: bytes, key: str | None = None, headers: Mapping[str, bytes] | None = None
    ) -> None: ...


class DeadLetterMessage(NamedTuple):
    """A dead letter ready to produce: at most ``max_bytes`` of key, value and headers."""

    value: bytes
    key: str | None
    headers: dict[str, bytes]


def error_reason_label(error: Exception) -> str:
    """A low-cardinality label for metrics: the field for schema errors, else the type."""
    if isinstance(error, SchemaError):
        return f"schema:{error.field.split('.')[0] or 'document'}"
    if isinstance(error, MisroutedRecordError):
        return MisroutedRecordError.reason
    if isinstance(error, MessageTooLargeError):
        return "too_large"
    return type(error).__name__


def message_size(key: str | None, value: bytes, headers: Mapping[str, bytes]) -> int:
    """Key + value + header names and values, in bytes: what librdkafka measures against
    ``message.max.bytes`` (less its few bytes of framing)."""
    size = len(value) + (len(key.encode()) if key is not None else 0)
    return size + sum(len(name.encode()) + len(v) for name, v in headers.items())


def _cut(text: str, max_bytes: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``max_bytes`` at a character boundary."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return raw
    return raw[:max_bytes].decode("utf-8", "ignore").encode()


def dead_letter(
    original: bytes,
    key: str | None,
    error: Exception,
    source: str,
    max_bytes: int = DEFAULT_DLQ_MAX_BYTES,
    original_size_bytes: int | None = None,
    original_sha256: str | None = None,
) -> DeadLetterMessage:
    """The dead letter of ``original``, bounded to ``max_bytes`` (see the module docstring).

    Args:
        source: where it came from, e.g. ``chat.events/3/1042`` or ``file:events.jsonl:17``.
        original_size_bytes, original_sha256: when ``original`` is only the first bytes of
            a longer original (a line too long to hold in memory), the whole one's size and digest.
    """
    path = error.field if isinstance(error, SchemaError) else ""
    reason = error.reason if isinstance(error, SchemaError) else str(error)
    values = {REASON: reason, FIELD: path, ERROR_TYPE: type(error).__name__, SOURCE: source}
    headers = {name: _cut(text, _HEADER_MAX_BYTES[name]) for name, text in values.items()}
    cut: list[str] = []
    if key is not None and not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:  # a consumer kept undecodable key bytes as surrogates
            raw_key = key.encode("utf-8", "surrogateescape")
            headers[ORIGINAL_KEY] = raw_key[:KEY_MAX_BYTES]
            if len(raw_key) > KEY_MAX_BYTES:
                cut.append("key")
            key = None
    if key is not None and len(key.encode()) > KEY_MAX_BYTES:
        key = _cut(key, KEY_MAX_BYTES).decode()
        cut.append("key")
    size = len(original) if original_size_bytes is None else original_size_bytes
    if size == len(original) and message_size(key, original, headers) <= max_bytes and not cut:
        return DeadLetterMessage(original, key, headers)
    headers[ORIGINAL_SIZE] = str(size).encode()
    headers[ORIGINAL_SHA256] = (original_sha256 or hashlib.sha256(original).hexdigest()).encode()
    headers[TRUNCATED] = b"value"  # reserves the longest value the header can take below
    room = max_bytes - message_size(key, b"", headers) - len(b"key,")
    value = original[: max(0, room)]
    if len(value) < size:
        cut.append("value")
    if cut:
        headers[TRUNCATED] = ",".join(cut).encode()
    else:
        del headers[TRUNCATED]
    return DeadLetterMessage(value, key, headers)


def send_to_dlq(
    producer: MessageSink,
    original: bytes,
    key: str | None,
    error: Exception,
    source: str,
    topic: str = CHAT_EVENTS_DLQ,
    max_bytes: int = DEFAULT_DLQ_MAX_BYTES,
    original_size_bytes: int | None = None,
    original_sha256: str | None = None,
) -> DeadLetterMessage:
    """Queue the dead letter of ``original`` (bounded to ``max_bytes``) on ``topic``; returns it.

    Should the producer still refuse it for its size (``max_bytes`` set above the producer's
    ``message.max.bytes``), it is bounded again below that limit and sent once more.

    Args:
        source: where it came from, e.g. ``chat.events/3/1042`` or ``file:events.jsonl:17``.
        original_size_bytes, original_sha256: see ``dead_letter``.
    """
    letter = dead_letter(original, key, error, source, max_bytes, original_size_bytes, original_sha256)
    try:
        producer.produce(topic, letter.value, key=letter.key, headers=letter.headers)
    except MessageTooLargeError as exc:
        if exc.max_bytes >= max_bytes:
            raise
        smaller = max(MIN_DLQ_MAX_BYTES, exc.max_bytes * 9 // 10)  # a tenth for librdkafka's framing
        letter = dead_letter(original, key, error, source, smaller, original_size_bytes, original_sha256)
        producer.produce(topic, letter.value, key=letter.key, headers=letter.headers)
    return letter
