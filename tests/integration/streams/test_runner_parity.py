"""The same 50,000-event stream through the embedded, Kafka and Faust runners: identical outputs."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from streams_helpers import embedded_truth, outputs, produce, read_all, start_worker, wait_committed

from schemas import Topics, engagement_signal_adapter
from streams import KafkaBus, KafkaSettings
from streams.processors import SignalsProcessor
from streams.runners import TransactionalRunner, changelog_topic
from streams.runners.faust import faust_table_topic
from tests.kits.synthetic_traffic import synthetic_events

N_EVENTS = 50_000

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stream() -> list[tuple[str | None, bytes]]:
    return synthetic_events(N_EVENTS, seed=11)


@pytest.fixture(scope="module")
def truth(stream: list[tuple[str | None, bytes]]) -> tuple[Counter[Any], int]:
    counts, _, dlq = embedded_truth(stream, Topics("truth"))
    return counts, dlq


def test_embedded_truth_is_meaningful(stream: list[tuple[str | None, bytes]], truth: tuple[Counter[Any], int]) -> None:
    counts, dlq = truth
    assert len(stream) >= N_EVENTS and dlq > 0
    kinds = Counter(engagement_signal_adapter.validate_json(v).kind for (_, v) in counts)
    assert kinds["response_outcome"] > 10_000 and kinds["session_summary"] > 3_000 and kinds["arm_window"] > 20
    assert max(counts.values()) == 1  # every output is distinct


@pytest.mark.parametrize("runner", ["kafka", "faust"])
def test_runner_outputs_equal_embedded(
    runner: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    truth: tuple[Counter[Any], int],
    tmp_path: Path,
    stream: list[tuple[str | None, bytes]],
) -> None:
    expected, expected_dlq = truth
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-{runner}"
    try:
        produce(bus, topics.chat_events, stream)
        if runner == "kafka":
            loop = TransactionalRunner(bus, SignalsProcessor(), topics, group)
            loop.start()
            while loop.events_in < len(stream):
                loop.poll_once()
            loop.stop()
            assert outputs(bus, topics) == expected  # exactly once: the same multiset, no duplicate
        else:
            log = tmp_path / "faust.log"
            proc = start_worker("faust", topics.namespace, group, log)
            try:
                done = wait_committed(bus, group, topics.chat_events, len(stream), timeout_s=200)
                assert done == len(stream), log.read_text()[-3000:]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            got = outputs(bus, topics)
            # At-least-once: a replay may repeat an output (same key and bytes), never change one.
            assert set(got) == set(expected)
        sources = {r.headers.get("dlq.source") for r in read_all(bus, topics.chat_events_dlq, 2)}
        assert len(sources) == expected_dlq
    finally:
        bus.delete_topics(
            [t.name for t in topics.specs()] + [changelog_topic(topics, group), faust_table_topic(group, "signals")]
        )
