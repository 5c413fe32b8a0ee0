"""Crash tests against the real broker: runners SIGKILLed at random points and restarted.

Kafka runner: final outputs, dead letters and persisted state equal the ground truth
exactly (nothing lost, nothing twice). Faust runner (at-least-once): nothing lost, and the
persisted state equals the ground truth exactly (a replay is never double counted).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from streams_helpers import (
    ChunkFeeder,
    embedded_truth,
    faust_state,
    kafka_state,
    outputs,
    read_all,
    start_worker,
    wait_committed,
)

from schemas import Topics
from streams import KafkaBus, KafkaSettings
from streams.runners import changelog_topic
from streams.runners.faust import faust_table_topic
from tests._wait import wait_until
from tests.kits.synthetic_traffic import synthetic_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]


def _kill_repeatedly(
    bus: KafkaBus,
    runner: str,
    topics: Topics,
    group: str,
    log: Path,
    feeder: ChunkFeeder,
    kills: int,
    rng: random.Random,
) -> int:
    """Start a worker with a fresh chunk of traffic arriving, wait until it has committed
    progress, kill it at a random moment after. Returns the offsets committed before the
    last kill."""
    done = 0
    for _ in range(kills):
        feeder.next_chunk()
        proc = start_worker(runner, topics.namespace, group, log)

        def progressed(proc: subprocess.Popen[bytes] = proc, before: int = done) -> int:
            assert proc.poll() is None, (
                f"the worker exited ({proc.returncode}) before its kill:\n{log.read_text()[-3000:]}"
            )
            now = wait_committed(bus, group, topics.chat_events, 1 << 60, 0)
            return now if now > before else 0

        done = wait_until(progressed, 90, every_s=0.2, what="the restarted worker to commit progress")
        time.sleep(rng.uniform(0.0, 1.0))  # the crash comes at a random moment: part of the scenario
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, "the worker must still be running when killed"
    return done


def test_kafka_runner_sigkilled_ten_times_equals_ground_truth(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events(30_000, seed=5)
    expected, truth_processor, expected_dlq = embedded_truth(events, Topics("truth"))
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-kafka"
    log = tmp_path / "worker.log"
    try:
        # Traffic keeps arriving while the runner is killed and restarted; the last of the
        # eleven chunks comes after the last kill, so the kills interrupt the run.
        feeder = ChunkFeeder(bus, topics.chat_events, events, chunks=11)
        progress = _kill_repeatedly(bus, "kafka", topics, group, log, feeder, kills=10, rng=random.Random(3))
        assert 0 < progress < len(events)
        feeder.finish()
        final = start_worker("kafka", topics.namespace, group, log, idle_s=3.0)
        assert final.wait(120) == 0, log.read_text()[-3000:]
        assert outputs(bus, topics) == expected
        assert len(read_all(bus, topics.chat_events_dlq, 2)) == expected_dlq
        state = kafka_state(bus, changelog_topic(topics, group))
        assert state == {src: truth_processor.snapshot(src) for src in truth_processor.owned()}
    finally:
        bus.delete_topics([t.name for t in topics.specs()] + [changelog_topic(topics, group)])


def test_faust_runner_sigkilled_loses_nothing_and_never_double_counts(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events(30_000, seed=6)
    expected, truth_processor, _ = embedded_truth(events, Topics("truth"))
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-faust"
    log = tmp_path / "faust.log"
    try:
        feeder = ChunkFeeder(bus, topics.chat_events, events, chunks=11)  # as above: the last chunk after the kills
        progress = _kill_repeatedly(bus, "faust", topics, group, log, feeder, kills=10, rng=random.Random(4))
        assert 0 < progress < len(events)
        feeder.finish()
        truth = {src: truth_processor.snapshot(src) for src in truth_processor.owned()}
        table = faust_table_topic(group, "signals")
        final = start_worker("faust", topics.namespace, group, log)
        try:
            assert wait_committed(bus, group, topics.chat_events, len(events), 150) == len(events), log.read_text()[
                -3000:
            ]
            # The last checkpoint's table writes may still be on their way to the changelog.
            wait_until(lambda: faust_state(bus, table) == truth, 60, every_s=0.5, what="the table to hold the truth")
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(30)
        got = outputs(bus, topics)
        assert set(got) == set(expected)  # nothing lost; replays only repeat identical outputs
        assert faust_state(bus, table) == truth  # and a clean stop left it so
    finally:
        bus.delete_topics([t.name for t in topics.specs()] + [faust_table_topic(group, "signals")])
