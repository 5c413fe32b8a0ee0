"""Co-partitioning on the embedded runner: a record whose key hashes to another partition
(its producer used librdkafka's CRC32 default instead of murmur2) is dead-lettered as
misrouted, counted and logged, and the processor's outputs are those of the stream without it."""

from __future__ import annotations

import logging
import zlib
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from schemas import Topics
from streams import DeadLetter, EmbeddedBus, Record, TopicPartition, partition_for_key
from streams.processors import SignalsProcessor, SourcePartition
from streams.runners import EmbeddedRunner, RunnerConfig
from streams.runners._routing import PartitionCheck
from tests.kits.synthetic_traffic import synthetic_events

PARTITIONS = 8


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random) for a non-empty key."""
    return zlib.crc32(key) % partitions


def _read(bus: EmbeddedBus, topic: str) -> list[Record]:
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
    out: list[Record] = []
    while batch := consumer.consume(50_000, 0):
        out.extend(batch)
    return out


def _run(
    events: list[tuple[str | None, bytes]], crc32_keys: set[str], config: RunnerConfig | None = None
) -> tuple[EmbeddedBus, Topics, EmbeddedRunner]:
    """Signals over ``events``; the events of ``crc32_keys`` are produced where CRC32 puts them."""
    topics = Topics("t")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    assert bus.partitions(topics.chat_events) == PARTITIONS
    producer = bus.producer()
    for key, value in events:
        partition = crc32_partition(key.encode(), PARTITIONS) if key in crc32_keys else None
        producer.produce(topics.chat_events, value, key=key, partition=partition)
    runner = EmbeddedRunner(bus, SignalsProcessor(), topics, config=config)
    runner.start()
    runner.run_until_idle()
    runner.stop()
    return bus, topics, runner


def _misrouted_total() -> float:
    return (
        REGISTRY.get_sample_value(
            "flywheel_streams_processor_misrouted_total", {"processor": "signals", "topic": "chat.events"}
        )
        or 0.0
    )


def test_records_of_a_crc32_producer_are_dead_lettered_as_misrouted(caplog: pytest.LogCaptureFixture) -> None:
    events = synthetic_events(3_000, seed=4, bad_share=0.0)
    keys = sorted({k for k, _ in events if k is not None})
    moved = {k for k in keys[::10] if crc32_partition(k.encode(), PARTITIONS) != partition_for_key(k.encode(), 8)}
    assert len(moved) >= 5
    before = _misrouted_total()

    with caplog.at_level(logging.WARNING, logger="streams.runners._routing"):
        bus, topics, runner = _run(events, moved)

    misrouted = [(k, v) for k, v in events if k in moved]
    dead = [DeadLetter.from_record(r) for r in _read(bus, topics.chat_events_dlq)]
    assert sorted((d.key, d.original) for d in dead) == sorted(misrouted)
    assert {d.error_type for d in dead} == {"MisroutedRecordError"}
    assert all(d.reason.startswith("misrouted: ") and "under murmur2" in d.reason for d in dead)
    assert runner.dead_letters == len(misrouted) and runner.routing.misrouted == len(misrouted)
    assert _misrouted_total() - before == len(misrouted)
    warnings = [r for r in caplog.records if "wrong partition" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one report for the whole burst

    # Not applied: the outputs are those of the stream without the misrouted records.
    clean_bus, _, _ = _run([(k, v) for k, v in events if k not in moved], set())
    outputs = Counter((r.key, r.value) for r in _read(bus, topics.engagement_signals))
    assert outputs == Counter((r.key, r.value) for r in _read(clean_bus, topics.engagement_signals))


def test_the_configured_partitioner_decides_and_off_checks_nothing() -> None:
    events = synthetic_events(500, seed=9, bad_share=0.0)
    keys = {k for k, _ in events if k is not None}
    # A CRC32 fleet: with partitioner=crc32 its records are at home, the murmur2-produced ones are not.
    _, _, crc32_runner = _run(events, keys, RunnerConfig(partitioner="crc32"))
    assert crc32_runner.dead_letters == 0
    _, _, strict = _run(events, set(), RunnerConfig(partitioner="crc32"))
    expected = sum(crc32_partition(k.encode(), 8) != partition_for_key(k.encode(), 8) for k, _ in events if k)
    assert strict.dead_letters == expected > 0
    _, _, off = _run(events, keys, RunnerConfig(partitioner="off"))
    assert off.dead_letters == 0 and not off.routing.enabled


def test_check_caches_per_key_and_asks_the_partition_count_again_after_forget() -> None:
    asked: list[str] = []

    def partitions_of(topic: str) -> int:
        asked.append(topic)
        return 4

    check = PartitionCheck("p", "murmur2", partitions_of, max_cached_keys=2)
    src = SourcePartition("chat.events", partition_for_key(b"a", 4))
    assert check.check(src, "a") is None and check.check(src, None) is None
    for key in ("b", "c", "d", "a"):
        check.check(src, key)
    assert asked == ["chat.events"]  # the cache starting over keeps the partition count
    check.forget()
    error = check.check(SourcePartition("chat.events", (src.partition + 1) % 4), "a")
    assert asked == ["chat.events", "chat.events"]
    assert error is not None and error.expected_partition == src.partition and error.partitioner == "murmur2"
