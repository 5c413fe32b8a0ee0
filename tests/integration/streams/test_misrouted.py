"""A producer with librdkafka's default partitioner (CRC32, what kcat uses) next to
flywheel's (murmur2), on the real broker: the Kafka runner dead-letters exactly the
records that landed in another partition than their key's, and applies the rest."""

from __future__ import annotations

import zlib

import pytest
from confluent_kafka import Producer as RawProducer

from schemas import Topics
from streams import DeadLetter, KafkaBus, KafkaSettings, Record, TopicPartition, partition_for_key
from streams.processors import SignalsProcessor
from streams.runners import TransactionalRunner, changelog_topic
from tests._wait import wait_until
from tests.kits.synthetic_traffic import synthetic_events

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random) for a non-empty key."""
    return zlib.crc32(key) % partitions


def _read_to_end(bus: KafkaBus, topic: str) -> list[Record]:
    """Every committed record of ``topic`` up to its end offsets as of the call."""
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


def test_records_of_a_crc32_producer_are_dead_lettered_by_the_kafka_runner(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    events = synthetic_events(2_000, seed=8, bad_share=0.0)
    partitions = 8
    users = sorted({k for k, _ in events if k is not None})
    # Users whose events a second app sends with kcat-like defaults, where CRC32 moves them.
    moved = {u for u in users[::15] if crc32_partition(u.encode(), partitions) != partition_for_key(u.encode(), 8)}
    assert len(moved) >= 5
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    assert bus.partitions(topics.chat_events) == partitions
    group = f"{topics.namespace}-runner"
    flywheel_producer = bus.producer()
    librdkafka_default = RawProducer({"bootstrap.servers": kafka_settings.bootstrap_servers})
    try:
        for key, value in events:
            if key in moved:
                librdkafka_default.produce(topics.chat_events, value, key)
            else:
                flywheel_producer.produce(topics.chat_events, value, key=key)
        assert librdkafka_default.flush(30) == 0
        flywheel_producer.flush()

        runner = TransactionalRunner(bus, SignalsProcessor(), topics, group)
        runner.start()
        try:
            wait_until(
                lambda: runner.poll_once() >= 0 and runner.events_in >= len(events),
                90,
                every_s=0,
                what=f"the runner to consume {len(events)} events",
            )
        finally:
            runner.stop()

        misrouted = sorted((k, v) for k, v in events if k in moved)
        dead = _read_to_end(bus, topics.chat_events_dlq)
        letters = [DeadLetter.from_record(r) for r in dead]
        assert sorted((d.key or "", d.original) for d in letters) == misrouted
        assert {d.error_type for d in letters} == {"MisroutedRecordError"}
        for letter in letters:
            assert letter.key is not None and letter.reason.startswith("misrouted: ")
            topic, partition, _ = letter.source.rsplit("/", 2)
            assert topic == topics.chat_events
            assert int(partition) == crc32_partition(letter.key.encode(), partitions)
            assert f"partition {partition_for_key(letter.key.encode(), partitions)} " in letter.reason
        assert runner.routing.misrouted == runner.dead_letters == len(misrouted)
    finally:
        bus.delete_topics([t.name for t in topics.specs()] + [changelog_topic(topics, group)])
