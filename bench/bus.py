"""Bus benchmark against the local broker: the producer SDK (validation + murmur2 +
idempotent delivery) vs raw confluent-kafka producing the same bytes, and consumption
through KafkaBus vs raw confluent-kafka. Last line: one JSON object."""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, Producer

from schemas import Topics, UserMessageEvent
from streams import ChatEventProducer, KafkaBus, KafkaSettings

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))


def main() -> None:
    settings = KafkaSettings(bootstrap_servers=os.environ.get("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    bus = KafkaBus(settings)
    topics = Topics(f"bench-{uuid.uuid4().hex[:6]}")
    bus.create_topics(topics.specs())
    ts = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        UserMessageEvent(
            event_id=uuid.uuid4(),
            ts=ts,
            user_id=f"user-{i % 5000}",
            conversation_id=f"c-{i % 5000}",
            character_id="char",
            turn=1 + i // 5000,
            text=f"hello number {i}",
        )
        for i in range(EVENTS)
    ]
    payloads = [(e.user_id, e.model_dump_json().encode()) for e in events]
    try:
        t0 = time.perf_counter()
        with ChatEventProducer(bus.producer(), topic=topics.chat_events) as sdk:
            for e in events:
                sdk.emit(e)
        sdk_s = time.perf_counter() - t0

        raw = Producer(
            {
                **settings.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "linger.ms": settings.linger_ms,
                "compression.type": settings.compression_type,
            }
        )
        t0 = time.perf_counter()
        for key, value in payloads:
            while True:
                try:
                    raw.produce(topics.samples_reward, value, key)
                    break
                except BufferError:
                    raw.poll(0.01)
        raw.flush()
        raw_s = time.perf_counter() - t0

        consumer = bus.consumer(f"bench-{uuid.uuid4().hex[:6]}")
        consumer.subscribe([topics.chat_events])
        t0, n = time.perf_counter(), 0
        while n < EVENTS:
            n += len(consumer.consume(10_000, 1.0))
        bus_consume_s = time.perf_counter() - t0
        consumer.close()

        plain = Consumer(
            {
                **settings.client_config(),
                "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        plain.subscribe([topics.samples_reward])
        t0, n = time.perf_counter(), 0
        while n < EVENTS:
            n += sum(1 for m in plain.consume(10_000, 1.0) if m.error() is None)
        raw_consume_s = time.perf_counter() - t0
        plain.close()
    finally:
        bus.delete_topics(t.name for t in topics.specs())

    result = {
        "events": EVENTS,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "sdk_produce_events_per_s": round(EVENTS / sdk_s),
        "raw_produce_events_per_s": round(EVENTS / raw_s),
        "sdk_vs_raw_produce": round(raw_s / sdk_s, 3),
        "bus_consume_events_per_s": round(EVENTS / bus_consume_s),
        "raw_consume_events_per_s": round(EVENTS / raw_consume_s),
        "bus_vs_raw_consume": round(raw_consume_s / bus_consume_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
