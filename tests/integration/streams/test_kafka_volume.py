"""100,000 events through ChatEventProducer into the real broker and back: none lost,
none duplicated, per-key order kept, each key on the partition a murmur2 client picks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import Topics, UserMessageEvent
from streams import ChatEventProducer, KafkaBus, KafkaSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
EVENTS = 100_000
USERS = 2_000


def test_hundred_thousand_events_round_trip(kafka_settings: KafkaSettings, topics: Topics, unique) -> None:
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    try:
        start = datetime.now(UTC) - timedelta(hours=1)
        with ChatEventProducer(bus.producer(), topic=topics.chat_events) as events:
            for i in range(EVENTS):
                user = i % USERS
                events.emit(
                    UserMessageEvent(
                        event_id=uuid.uuid4(),
                        ts=start,
                        user_id=f"user-{user}",
                        conversation_id=f"conv-{user}",
                        character_id="char-1",
                        turn=i // USERS + 1,
                        text=f"message {i}",
                    )
                )
        consumer = bus.consumer(unique("g"))
        consumer.subscribe([topics.chat_events])
        seen: dict[str, list[int]] = {}
        ids: set[str] = set()
        total = 0
        partitions = bus.partitions(topics.chat_events)
        all_partitions = list(range(partitions))
        idle = 0
        while total < EVENTS and idle < 20:
            batch = consumer.consume(5000, 1.0)
            idle = 0 if batch else idle + 1
            for record in batch:
                doc = json.loads(record.value)
                total += 1
                ids.add(doc["event_id"])
                seen.setdefault(record.key, []).append(doc["turn"])
                # aiokafka's own murmur2 partitioner: an independent implementation of Java's formula.
                assert record.partition == DefaultPartitioner()(record.key.encode(), all_partitions, all_partitions)
        assert not consumer.consume(1000, 1.0), "more records than were sent"
        consumer.close()
        assert total == EVENTS and len(ids) == EVENTS  # nothing lost, nothing duplicated
        assert len(seen) == USERS
        assert all(turns == sorted(turns) for turns in seen.values())  # per-key order
    finally:
        bus.delete_topics(t.name for t in topics.specs())
