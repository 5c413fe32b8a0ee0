"""Helpers of the stream integration tests: feed, read back, compare with the embedded run."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from schemas import Topics
from streams import Bus, EmbeddedBus, KafkaBus, TopicPartition
from streams.processors import SignalsProcessor, SourcePartition
from streams.runners import EmbeddedRunner
from streams.runners.faust import unwrap_partition

WORKER = Path(__file__).with_name("stream_worker.py")
ROOT = Path(__file__).resolve().parents[3]


def produce(bus: Bus, topic: str, events: list[tuple[str | None, bytes]]) -> None:
    producer = bus.producer()
    for key, value in events:
        producer.produce(topic, value, key=key)
    producer.flush()


class ChunkFeeder:
    """Produces ``events`` in order, from a thread, one chunk each time ``next_chunk()`` is
    called, in paced batches, so that traffic is still arriving while a worker runs and is
    killed. ``finish()`` sends whatever is left and waits until all of it is written."""

    def __init__(self, bus: Bus, topic: str, events: list[tuple[str | None, bytes]], chunks: int) -> None:
        size = -(-len(events) // chunks)
        self._chunks = [events[i : i + size] for i in range(0, len(events), size)]
        self._asked: queue.Queue[bool] = queue.Queue()
        self._given = 0
        self._producer = bus.producer()
        self._topic = topic
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def next_chunk(self) -> None:
        self._given += 1
        self._asked.put(True)

    def finish(self, timeout_s: float = 120.0) -> None:
        for _ in range(len(self._chunks) - self._given):
            self.next_chunk()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the feeder did not finish within {timeout_s:g} s"

    def _run(self) -> None:
        for chunk in self._chunks:
            self._asked.get()
            for i in range(0, len(chunk), 300):
                for key, value in chunk[i : i + 300]:
                    self._producer.produce(self._topic, value, key=key)
                self._producer.flush()
                time.sleep(0.1)  # pacing: the chunk arrives over about a second, not at once
        self._producer.close()


def read_all(bus: Bus, topic: str, idle_polls: int = 3) -> list[Any]:
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
    out: list[Any] = []
    empty = 0
    while empty < idle_polls:
        batch = consumer.consume(20_000, 0.3)
        out.extend(batch)
        empty = 0 if batch else empty + 1
    consumer.close()
    return out


def outputs(bus: Bus, topics: Topics) -> Counter[tuple[str | None, bytes]]:
    return Counter((r.key, r.value) for r in read_all(bus, topics.engagement_signals))


def embedded_truth(
    events: list[tuple[str | None, bytes]], topics: Topics
) -> tuple[Counter[Any], SignalsProcessor, int]:
    """Ground truth: the signals processor over the same events on the in-process bus."""
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    produce(bus, topics.chat_events, events)
    processor = SignalsProcessor()
    runner = EmbeddedRunner(bus, processor, topics, "truth")
    runner.start()
    runner.run_until_idle()
    dlq = len(read_all(bus, topics.chat_events_dlq, 1))
    result = outputs(bus, topics)
    return result, processor, dlq


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def start_worker(
    runner: str,
    namespace: str,
    group: str,
    log: Path,
    idle_s: float | None = None,
    processor: str = "signals",
    config: dict[str, Any] | None = None,
) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(WORKER), runner, processor, namespace, group]
    if idle_s is not None:
        args.append(str(idle_s))
    env = worker_env()
    if config is not None:
        env["STREAM_WORKER_CONFIG"] = json.dumps(config)
    with log.open("ab") as sink:  # a file, not a pipe: a full pipe would stall the worker
        return subprocess.Popen(args, env=env, stdout=sink, stderr=sink)


def wait_committed(bus: KafkaBus, group: str, topic: str, total: int, timeout_s: float) -> int:
    """Wait until the group's committed offsets on ``topic`` add up to ``total``."""
    consumer = bus.consumer(group)
    tps = [TopicPartition(topic, p) for p in range(bus.partitions(topic))]
    deadline = time.monotonic() + timeout_s
    done = 0
    try:
        while True:
            done = sum(v or 0 for v in consumer.committed(tps).values())
            if done >= total or time.monotonic() >= deadline:
                break
            time.sleep(0.5)  # poll interval; the caller asserts on the count it gets back
    finally:
        consumer.close()
    return done


def faust_state(bus: KafkaBus, table_topic: str) -> dict[SourcePartition, dict[str, Any]]:
    """The Faust runner's persisted processor state, read back from its table changelog."""
    raw: dict[SourcePartition, dict[str, bytes]] = {}
    for r in read_all(bus, table_topic):
        topic, partition, key = r.key.split("|", 2)
        raw.setdefault(SourcePartition(topic, int(partition)), {})[key] = r.value
    return {src: {k: json.loads(v) for k, v in unwrap_partition(entries).items()} for src, entries in raw.items()}


def kafka_state(bus: KafkaBus, changelog: str) -> dict[SourcePartition, dict[str, Any]]:
    """The Kafka runner's persisted processor state, read back from its changelog topic."""
    state: dict[SourcePartition, dict[str, Any]] = {}
    for r in read_all(bus, changelog):
        topic, key = r.key.split("|", 1)
        entries = state.setdefault(SourcePartition(topic, r.partition), {})
        if r.value:
            entries[key] = json.loads(r.value)
        else:
            entries.pop(key, None)
    return state
