"""A record whose key is not UTF-8, written straight to the real broker: the Kafka consumer
hands it over without failing its batch, and the transactional runner dead-letters it with
the reason and the key's bytes, and applies the records around it."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer as RawProducer

from schemas import Topics
from streams import DeadLetter, KafkaBus, KafkaSettings, Record, TopicPartition, partition_for_key
from streams.processors import SignalsProcessor
from streams.runners import TransactionalRunner, changelog_topic
from tests._wait import wait_until
from tests.conftest import event_dict

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _read_to_end(bus: KafkaBus, topic: str) -> list[Record]:
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


def test_a_key_that_is_not_utf8_is_dead_lettered_by_the_kafka_runner(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-runner"
    partitions = bus.partitions(topics.chat_events)
    home = partition_for_key(b"user-1", partitions)
    raw = RawProducer({"bootstrap.servers": kafka_settings.bootstrap_servers})
    bad_key = b"user-\xff\xfe"
    try:
        # one partition, so the bad record sits between two good ones in one batch
        for turn, key in ((1, b"user-1"), (2, bad_key), (3, b"user-1")):
            value = json.dumps(event_dict(turn=turn)).encode()
            raw.produce(topics.chat_events, value, key, partition=home)
        assert raw.flush(30) == 0
        runner = TransactionalRunner(bus, SignalsProcessor(), topics, group)
        runner.start()
        try:
            wait_until(
                lambda: runner.poll_once() >= 0 and runner.events_in >= 3, 60, every_s=0, what="3 events consumed"
            )
        finally:
            runner.stop()
        (record,) = _read_to_end(bus, topics.chat_events_dlq)
        letter = DeadLetter.from_record(record)
        assert letter.key is None and letter.original_key == bad_key
        assert letter.field == "key" and "not valid UTF-8" in letter.reason
        assert letter.source == f"{topics.chat_events}/{home}/1"
        assert runner.dead_letters == 1
    finally:
        bus.delete_topics([t.name for t in topics.specs()] + [changelog_topic(topics, group)])
