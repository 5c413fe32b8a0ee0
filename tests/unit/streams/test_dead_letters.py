"""Dead letters of any size, on the embedded bus: every line or record is either sent or
dead-lettered, and no dead letter is larger than ``max_bytes`` (truncated ones carry the
original's size and sha256)."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Mapping
from typing import Any

from schemas import SchemaError, Topics, ValidationLimits
from streams import DeadLetter, DeadLetterConfig, EmbeddedBus, Record, TopicPartition, produce_lines
from streams.dlq import KEY_MAX_BYTES, dead_letter
from streams.processors import SignalsProcessor
from streams.runners import EmbeddedRunner
from tests.conftest import event_dict

MAX_BYTES = 100_000
MB = 1_000_000


def _bus(topics: Topics) -> EmbeddedBus:
    bus = EmbeddedBus()  # refuses messages over librdkafka's default message.max.bytes, as Kafka does
    bus.create_topics(topics.specs())
    return bus


def _read(bus: EmbeddedBus, topic: str) -> list[Record]:
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
    out: list[Record] = []
    while batch := consumer.consume(10_000, 0):
        out.extend(batch)
    return out


def message_size(key: str | None, value: bytes, headers: Mapping[str, bytes]) -> int:
    """What librdkafka counts against message.max.bytes: key, value, header names and values."""
    return len(value) + len((key or "").encode()) + sum(len(k.encode()) + len(v) for k, v in headers.items())


def _line(**overrides: Any) -> bytes:
    return json.dumps(event_dict("user_message", **overrides)).encode()


def _assert_bounded(letter: DeadLetter, record: Record, original: bytes) -> None:
    assert message_size(record.key, record.value, record.headers) <= MAX_BYTES
    assert original.startswith(letter.original)
    assert letter.original_size_bytes == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert ("value" in letter.truncated) == (len(letter.original) < len(original))


def test_produce_lines_accounts_for_every_line_and_bounds_dead_letters() -> None:
    rng = random.Random(3)
    good = [_line(user_id=f"u{i % 40}", turn=i + 1) for i in range(500)]
    bad = [
        _line(text="x" * 5 * MB),  # 5 MB: too long for the validator
        json.dumps(event_dict(text="é" * 3 * MB), ensure_ascii=False).encode(),  # 6 MB of two-byte characters
        _line(text="y" * 2 * MB, user_id="u" * 3 * MB),  # a huge key candidate too
        json.dumps({"z" * MB: 1, **event_dict()}).encode(),  # an unknown field whose name is 1 MB
        b"\xff\xfe\x00 not utf-8 " * 1000,
        b'{"type": "user_message", "turn": ',
        b"[" * 200_000,  # nested deeper than any parser recurses
        b"not json at all",
    ]
    huge_valid = _line(text="v" * 2 * MB)  # valid under the raised text limit, too large for the bus
    lines = good + bad + [huge_valid, b"", b"   "]
    rng.shuffle(lines)
    topics = Topics("t")
    bus = _bus(topics)

    summary = produce_lines(
        io.BytesIO(b"\n".join(lines) + b"\n"),
        bus.producer(),
        "events.jsonl",
        limits=ValidationLimits(max_text_chars=2 * MB),
        topics=topics,
        dlq=DeadLetterConfig(max_bytes=MAX_BYTES),
    )

    assert (summary.lines, summary.sent, summary.rejected, summary.blank) == (len(lines), 500, len(bad) + 1, 2)
    assert summary.sent + summary.rejected + summary.blank == summary.lines
    assert sorted(r.value for r in _read(bus, topics.chat_events)) == sorted(good)
    dead = _read(bus, topics.chat_events_dlq)
    assert len(dead) == summary.rejected
    by_line = {int(DeadLetter.from_record(r).source.rsplit(":", 1)[1]): r for r in dead}
    rejected = {number for number, line in enumerate(lines, start=1) if line in bad or line == huge_valid}
    assert set(by_line) == rejected and {n for n, _ in summary.rejections} == rejected
    for number, record in by_line.items():
        letter = DeadLetter.from_record(record)
        _assert_bounded(letter, record, lines[number - 1])
        assert letter.reason and letter.error_type
    assert summary.truncated == sum(bool(DeadLetter.from_record(r).truncated) for r in dead) == 6
    too_large = DeadLetter.from_record(by_line[lines.index(huge_valid) + 1])
    assert too_large.error_type == "MessageTooLargeError" and "message.max.bytes" in too_large.reason


def test_a_line_longer_than_the_read_bound_is_dead_lettered_with_its_whole_size_and_digest() -> None:
    long_line = b"q" * 3 * MB
    topics = Topics("t")
    bus = _bus(topics)
    stream = io.BytesIO(_line() + b"\n" + long_line + b"\r\n" + _line())
    summary = produce_lines(
        stream, bus.producer(), "f", topics=topics, dlq=DeadLetterConfig(max_bytes=MAX_BYTES), max_line_bytes=MB
    )
    assert (summary.lines, summary.sent, summary.rejected) == (3, 2, 1)
    (record,) = _read(bus, topics.chat_events_dlq)
    letter = DeadLetter.from_record(record)
    _assert_bounded(letter, record, long_line)
    assert letter.source == "file:f:2" and "longer than" in letter.reason


def test_runner_dead_letters_a_record_near_the_broker_limit_truncated() -> None:
    topics = Topics("t")
    bus = _bus(topics)
    huge = _line(text="w" * 900_000)  # fits the bus (1,000,000), its dead letter would not fit 100,000
    small = _line(text="hi")
    producer = bus.producer()
    for value in (small, huge, small):
        producer.produce(topics.chat_events, value, key="user-1")
    runner = EmbeddedRunner(bus, SignalsProcessor(), topics, dlq=DeadLetterConfig(max_bytes=MAX_BYTES))
    runner.start()
    runner.run_until_idle()
    runner.stop()
    assert runner.events_in == 3 and runner.dead_letters == 1
    (record,) = _read(bus, topics.chat_events_dlq)
    letter = DeadLetter.from_record(record)
    _assert_bounded(letter, record, huge)
    assert letter.truncated == ("value",) and letter.field == "text" and letter.source.startswith("t.chat.events/")


def test_dead_letter_caps_key_and_headers_at_character_boundaries() -> None:
    error = SchemaError("ü" * 5000, "ö" * 5000)  # a field path and reason quoting the bad input
    letter = dead_letter(b"{}", "ä" * 5000, error, "file:" + "s" * 5000, max_bytes=16_384)
    assert message_size(letter.key, letter.value, letter.headers) <= 16_384
    assert letter.key is not None and len(letter.key.encode()) <= KEY_MAX_BYTES
    back = DeadLetter.from_record(Record("dlq", 0, 0, letter.key, letter.value, 0, letter.headers))
    assert back.truncated == ("key",) and back.original == b"{}" and back.original_size_bytes == 2
    assert set(back.field) == {"ü"} and set(back.reason) == {"ö"}  # cut between characters, never inside one


def test_small_dead_letters_are_unchanged() -> None:
    letter = dead_letter(b"not json", "user-1", SchemaError("", "not valid JSON"), "chat.events/0/7")
    assert letter.value == b"not json" and letter.key == "user-1"
    assert set(letter.headers) == {"dlq.reason", "dlq.field", "dlq.error_type", "dlq.source"}
