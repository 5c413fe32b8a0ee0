"""`flywheel produce` on 1,000 good and 100 malformed lines: all good ones in chat.events,
all bad ones in the DLQ with their reason and original bytes, nothing lost. On a file with
5 MB lines too: every line accounted for, every dead letter within the broker's limit."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import Topics
from streams import DeadLetter, KafkaBus, KafkaSettings, Record, TopicPartition
from tests._wait import wait_until
from tests.conftest import event_dict

pytestmark = [pytest.mark.kafka]


def _bad_lines(rng: random.Random) -> list[bytes]:
    kinds = [
        lambda: b'{"type": "user_message", "turn": ',  # truncated JSON
        lambda: json.dumps(event_dict("user_message", turn="x")).encode(),
        lambda: json.dumps(event_dict("user_message", type="user_sneezed")).encode(),
        lambda: json.dumps(event_dict("user_message", schema_version=9)).encode(),
        lambda: json.dumps(event_dict("user_message", ts="2026-01-01T00:00:00")).encode(),
        lambda: json.dumps(event_dict("user_message", text="x" * 40_000)).encode(),
        lambda: b"\xff\xfe not utf-8",
        lambda: json.dumps({k: v for k, v in event_dict("model_response").items() if k != "arm"}).encode(),
    ]
    return [rng.choice(kinds)() for _ in range(100)]


def _read_all(bus: KafkaBus, topic: str, group: str, expected: int) -> list:
    consumer = bus.consumer(group)
    consumer.subscribe([topic])
    out: list = []
    idle = 0
    while len(out) < expected and idle < 15:
        batch = consumer.consume(2000, 1.0)
        idle = 0 if batch else idle + 1
        out.extend(batch)
    out.extend(consumer.consume(2000, 1.0))  # anything beyond the expected count
    consumer.close()
    return out


def test_produce_file_with_bad_lines(kafka_settings: KafkaSettings, topics: Topics, unique, tmp_path: Path) -> None:
    rng = random.Random(7)
    good = [json.dumps(event_dict("user_message", user_id=f"u{i % 50}", turn=i + 1)).encode() for i in range(1000)]
    bad = _bad_lines(rng)
    lines = good + bad
    rng.shuffle(lines)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {
        **os.environ,
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FLYWHEEL_TOPIC_NAMESPACE": topics.namespace,
    }
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    try:
        run = subprocess.run(
            [sys.executable, "-m", "flywheel", "produce", str(path), "--strict"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert run.returncode == 1, run.stderr.decode()[-2000:]
        assert b"sent 1000, rejected 100" in run.stdout
        bad_numbers = {i + 1 for i, line in enumerate(lines) if line in bad}
        reported = {int(line.split(b":")[1]) for line in run.stderr.splitlines() if b": rejected: " in line}
        assert reported == bad_numbers

        events = _read_all(bus, topics.chat_events, unique("g"), 1000)
        assert sorted(r.value for r in events) == sorted(good)
        dead = [DeadLetter.from_record(r) for r in _read_all(bus, topics.chat_events_dlq, unique("g"), 100)]
        assert sorted(d.original for d in dead) == sorted(bad)
        assert all(
            d.reason and d.error_type == "SchemaError" and d.source.startswith("file:events.jsonl:") for d in dead
        )

        lenient = subprocess.run(
            [sys.executable, "-m", "flywheel", "produce", str(path)], env=env, capture_output=True, timeout=120
        )
        assert lenient.returncode == 0
    finally:
        bus.delete_topics(t.name for t in topics.specs())


DLQ_MAX_BYTES = 500_000


def _message_size(record: Record) -> int:
    """What librdkafka counts against message.max.bytes: key, value, header names and values."""
    headers = sum(len(k.encode()) + len(v) for k, v in record.headers.items())
    return len(record.value) + len((record.key or "").encode()) + headers


def _read_to_end(bus: KafkaBus, topic: str) -> list[Record]:
    """Every record of ``topic`` up to its end offsets as of the call."""
    consumer = bus.consumer(None)
    parts = [TopicPartition(topic, p) for p in range(bus.partitions(topic))]
    ends = {tp: consumer.watermarks(tp)[1] for tp in parts}
    consumer.assign(dict.fromkeys(parts, 0))
    out: list[Record] = []

    def at_end() -> bool:
        out.extend(consumer.consume(5000, 0.2))
        positions = consumer.position(parts)
        return all(positions.get(tp, 0) >= end for tp, end in ends.items())

    try:
        wait_until(at_end, 60, every_s=0, what=f"{topic} read to its end offsets {ends}")
    finally:
        consumer.close()
    return out


def test_produce_file_with_5mb_lines_accounts_for_every_line(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    rng = random.Random(5)
    mb = 1_000_000
    good = [json.dumps(event_dict("user_message", user_id=f"u{i % 50}", turn=i + 1)).encode() for i in range(2000)]
    too_long = [json.dumps(event_dict("user_message", text="x" * 5 * mb)).encode() for _ in range(3)]
    too_large = [json.dumps(event_dict("user_message", text="v" * 2 * mb)).encode() for _ in range(2)]
    malformed = [line for line in _bad_lines(rng) if b"x" * 40_000 not in line][:40]  # 40k chars is valid here
    bad = too_long + too_large + malformed + [b"\xff\xfe" * mb, b"[" * 300_000]
    lines = good + bad
    rng.shuffle(lines)
    # The huge lines early, as in the file that stopped the command after 212 of 5,700 lines.
    for i, line in enumerate(too_long + too_large):
        j = lines.index(line)
        lines[j], lines[10 + i * 7] = lines[10 + i * 7], lines[j]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {
        **os.environ,
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FLYWHEEL_TOPIC_NAMESPACE": topics.namespace,
        # 5 MB texts break the contract; 2 MB ones are valid but larger than the producer sends.
        "FLYWHEEL_MAX_TEXT_CHARS": str(3 * mb),
        "FLYWHEEL_STREAMS__DLQ__MAX_BYTES": str(DLQ_MAX_BYTES),
    }
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    try:
        run = subprocess.run(
            [sys.executable, "-m", "flywheel", "produce", str(path)], env=env, capture_output=True, timeout=300
        )
        assert run.returncode == 0, run.stderr.decode()[-3000:]
        assert f"sent {len(good)}, rejected {len(bad)}, blank 0 of {len(lines)} lines read".encode() in run.stdout

        assert sorted(r.value for r in _read_to_end(bus, topics.chat_events)) == sorted(good)
        dead = _read_to_end(bus, topics.chat_events_dlq)
        letters: dict[int, tuple[DeadLetter, Record]] = {}
        for record in dead:
            letter = DeadLetter.from_record(record)
            letters[int(letter.source.rsplit(":", 1)[1])] = (letter, record)
        assert len(dead) == len(letters) == len(bad)
        assert {lines[n - 1] for n in letters} == set(bad)
        for number, (letter, record) in letters.items():
            original = lines[number - 1]
            assert _message_size(record) <= DLQ_MAX_BYTES
            assert original.startswith(letter.original) and letter.reason and letter.error_type
            assert letter.original_size_bytes == len(original)
            assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
            assert ("value" in letter.truncated) == (len(original) > DLQ_MAX_BYTES)  # none lies near it
        assert {letters[lines.index(line) + 1][0].error_type for line in too_large} == {"MessageTooLargeError"}
        assert {letters[lines.index(line) + 1][0].field for line in too_long} == {"text"}
    finally:
        bus.delete_topics(t.name for t in topics.specs())
