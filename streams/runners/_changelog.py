"""The state changelog: a compacted topic, one partition per source partition, keyed
``<base input topic>|<entry key>``. Restoring a partition reads its changelog partition
to the end; the last value per key wins, an empty value deletes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from schemas import StreamError, Topics, TopicSpec
from streams.bus import Bus, KafkaBus, Producer, TopicPartition


def changelog_topic(topics: Topics, group_id: str) -> str:
    """Name of a processor group's changelog topic, inside the ``topics`` namespace."""
    name = f"flywheel.{group_id}.changelog"
    return f"{topics.namespace}.{name}" if topics.namespace else name


def ensure_changelog(bus: Bus, topic: str, inputs: Sequence[str]) -> int:
    """Create the changelog topic (compacted) with as many partitions as the widest input."""
    deadline = time.monotonic() + 15
    while True:
        try:
            partitions = max(bus.partitions(t) for t in inputs)
            break
        except StreamError:
            # A topic created a moment ago may not be in every broker's metadata yet.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    bus.create_topics(
        [
            TopicSpec(
                topic,
                "<input>|<state key>",
                "JSON state entry",
                partitions,
                "compact",
                config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
            )
        ]
    )
    return partitions


def write_changes(
    producer: Producer, bus: Bus, topic: str, partition: int, prefix: str, changes: dict[str, bytes | None]
) -> None:
    # Kafka deletes a key on a null value; the embedded bus only stores bytes.
    tombstone = None if isinstance(bus, KafkaBus) else b""
    for key, value in changes.items():
        producer.produce(
            topic,
            value if value is not None else tombstone,
            key=prefix + key,
            partition=partition,
        )


def read_changelog(bus: Bus, topic: str, partition: int, timeout_s: float = 120.0) -> dict[str, dict[str, bytes]]:
    """Every live entry of one changelog partition, grouped by input topic."""
    tp = TopicPartition(topic, partition)
    consumer = bus.consumer(None)
    try:
        low, high = consumer.watermarks(tp)
        out: dict[str, dict[str, bytes]] = {}
        if high <= low:
            return out
        consumer.assign({tp: low})
        deadline = time.monotonic() + timeout_s
        idle = 0
        while True:
            records = consumer.consume(5000, 0.2)
            for r in records:
                if r.key is None:
                    continue
                prefix, _, key = r.key.partition("|")
                if r.value:
                    out.setdefault(prefix, {})[key] = r.value
                else:
                    out.setdefault(prefix, {}).pop(key, None)
            position = consumer.position([tp]).get(tp, low)
            if position >= high:
                return out
            # Transaction markers of committed/aborted transactions occupy the tail offsets
            # but are never delivered; once nothing more arrives, the log has been read.
            idle = 0 if records else idle + 1
            if idle >= 10:
                return out
            if time.monotonic() > deadline:
                raise StreamError(
                    f"restoring {topic}[{partition}] did not reach offset {high} in {timeout_s}s",
                    topic=topic,
                    retriable=True,
                )
    finally:
        consumer.close()
