"""`flywheel produce` on 1,000 good and 100 malformed lines: all good ones in chat.events,
all bad ones in the DLQ with their reason and original bytes, nothing lost."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import Topics
from streams import DeadLetter, KafkaBus, KafkaSettings
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
