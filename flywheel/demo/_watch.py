"""Following topics from the side, as an operator's dashboard would: what each stage has
emitted, which checkpoints were published, which canary decisions were taken."""

from __future__ import annotations

from collections import Counter

from streams import Bus, Consumer, Record, TopicPartition


class TopicTail:
    """Reads one topic from the beginning, every partition, without a consumer group."""

    def __init__(self, bus: Bus, topic: str) -> None:
        self.topic = topic
        self._consumer: Consumer = bus.consumer(**{"auto.offset.reset": "earliest"})
        self._consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
        self.count = 0

    def poll(self, max_records: int = 10_000) -> list[Record]:
        out: list[Record] = []
        while True:
            records = self._consumer.consume(max_records, 0.0)
            out.extend(records)
            if len(records) < max_records:
                break
        self.count += len(out)
        return out

    def close(self) -> None:
        self._consumer.close()


class StageCounter:
    """Messages per topic (what every stage emitted), read continuously."""

    def __init__(self, bus: Bus, topics: dict[str, str]) -> None:
        self._tails = {name: TopicTail(bus, topic) for name, topic in topics.items()}
        self.kinds: Counter[str] = Counter()

    def poll(self) -> dict[str, int]:
        for tail in self._tails.values():
            tail.poll()
        return self.counts()

    def counts(self) -> dict[str, int]:
        return {name: tail.count for name, tail in self._tails.items()}

    def close(self) -> None:
        for tail in self._tails.values():
            tail.close()
