"""The transactional runner's commits: pipelined, and a failed one rewinds without loss or duplicates."""

from __future__ import annotations

from collections import Counter

from schemas import StreamError, Topics
from streams import EmbeddedBus, TopicPartition
from streams.bus.embedded import EmbeddedProducer
from streams.processors import SignalsProcessor
from streams.runners import RunnerConfig, TransactionalRunner
from tests.kits.synthetic_traffic import synthetic_events


class _FailingCommits(EmbeddedProducer):
    """Fails the commits numbered in ``fail_at`` as a broker would (a retriable error), after
    the transaction's messages were written: the bus then discards them, as Kafka's abort does."""

    def __init__(self, bus: EmbeddedBus, transactional_id: str | None, fail_at: set[int]) -> None:
        super().__init__(bus, transactional_id)
        self.fail_at = fail_at
        self.commits = 0

    def commit_transaction(self, timeout_s: float = 30.0) -> None:
        self.commits += 1
        if self.commits in self.fail_at:
            raise StreamError("transaction coordinator moved", retriable=True)
        super().commit_transaction(timeout_s)


class _Bus(EmbeddedBus):
    def __init__(self, fail_at: set[int]) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.transactional: list[_FailingCommits] = []

    def producer(self, transactional_id: str | None = None, **config: str | int) -> EmbeddedProducer:
        if transactional_id is None:
            return super().producer()
        producer = _FailingCommits(self, transactional_id, self.fail_at)
        self.transactional.append(producer)
        return producer


def _signals(bus: EmbeddedBus, topics: Topics) -> Counter[tuple[str | None, bytes]]:
    consumer = bus.consumer(None)
    topic = topics.engagement_signals
    consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
    out: Counter[tuple[str | None, bytes]] = Counter()
    while batch := consumer.consume(50_000, 0):
        out.update((r.key, r.value) for r in batch)
    return out


def _run(bus: EmbeddedBus, events: list[tuple[str | None, bytes]], batch: int) -> Counter[tuple[str | None, bytes]]:
    topics = Topics("t")
    bus.create_topics(topics.specs())
    producer = bus.producer()
    for key, value in events:
        producer.produce(topics.chat_events, value, key=key)
    # A commit after (almost) every poll: many transactions, each a chance to fail.
    runner = TransactionalRunner(
        bus, SignalsProcessor(), topics, "g", RunnerConfig(commit_interval_s=1e-6, max_batch=batch)
    )
    runner.start()
    for _ in range(100_000):
        if runner.poll_once(timeout_s=0) == 0 and runner.processor.owned():
            consumed = sum(runner.processor.last_offset(s) + 1 for s in runner.processor.owned())
            if consumed == len(events):
                break
    runner.stop()
    return _signals(bus, topics)


def test_failed_commits_rewind_to_the_last_committed_state_without_loss_or_duplicates() -> None:
    events = synthetic_events(4_000, seed=5)
    truth = _run(_Bus(set()), events, batch=37)
    assert sum(truth.values()) > 1_000 and max(truth.values()) == 1
    failing = _Bus({3, 4, 9, 20, 21, 22, 40})
    assert _run(failing, events, batch=37) == truth
    (producer,) = failing.transactional
    assert producer.commits > 40  # every planted failure happened, the run went on past them
