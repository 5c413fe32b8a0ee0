"""The trainer worker on the embedded bus with in-memory leases (the demo's wiring)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schemas import CheckpointManifest, Topics
from streams import EmbeddedBus, TopicPartition
from tests._wait import wait_until
from tests.unit.trainers.worker_helpers import produce_sft_samples, small_worker_settings, submit_job
from trainers.registry import CheckpointRegistry, version_for_job
from trainers.worker import InMemoryLeaseStore
from trainers.worker.worker import TrainerWorker

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]


class RecordingLeases(InMemoryLeaseStore):
    """Notes every job whose lease the worker asked for, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        self.asked.append(key)
        return super().acquire(key, owner, ttl_s)


def _manifests(bus: EmbeddedBus, topics: Topics) -> list[CheckpointManifest]:
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topics.models_checkpoints, 0): 0})
    return [CheckpointManifest.model_validate_json(r.value) for r in consumer.consume(1000, 0.2)]


def test_one_job_gives_one_gated_checkpoint_with_exact_lineage(tmp_path: Path) -> None:
    topics = Topics("unit-worker")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    ranges = produce_sft_samples(bus, topics, 24)
    job = submit_job(bus, topics, "job-embedded-1", ranges)
    settings = small_worker_settings(tmp_path)
    leases = InMemoryLeaseStore()
    with TrainerWorker(bus, topics, settings, leases, worker_id="w1") as worker:
        outcome = worker.run_once(timeout_s=5)
        assert outcome is not None and outcome.manifest is not None
        assert worker.run_once(timeout_s=0.2) is None  # committed: not delivered again
    m = outcome.manifest
    assert m.version == version_for_job(job.job_id) and m.parent == "base"
    assert m.lineage == job.inputs
    assert m.eval is not None and m.eval.baseline_version == "base" and m.eval.prompts == 4 * 6
    assert m.status == ("published" if m.eval.passed else "rejected") == outcome.outcome
    assert m.training["samples"] == 24
    registry = CheckpointRegistry(settings.registry)
    assert registry.open("tiny", m.version).manifest == m
    assert [x.version for x in _manifests(bus, topics)] == [m.version]
    assert leases.holder(job.job_id) is None

    # The same job again (a redelivery after a crash before commit): the same version, no retraining.
    submit_job(bus, topics, job.job_id, ranges)
    with TrainerWorker(bus, topics, settings, leases, worker_id="w2") as worker:
        again = worker.run_once(timeout_s=5)
    assert again is not None and again.outcome == "already_published" and again.manifest == m
    assert {x.version for x in _manifests(bus, topics)} == {m.version}
    assert [x.version for x in registry.list("tiny") if x.version != "base"] == [m.version]


def test_unreadable_job_is_counted_skipped_and_committed(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    topics = Topics("unit-worker-bad")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    producer = bus.producer()
    producer.produce(topics.trainer_jobs, b'{"job_id": "x", "kind": "astrology"}', key="x")
    producer.flush()
    before = REGISTRY.get_sample_value("flywheel_trainers_jobs_total", {"kind": "unknown", "outcome": "invalid"}) or 0.0
    with TrainerWorker(bus, topics, small_worker_settings(tmp_path), InMemoryLeaseStore()) as worker:
        outcome = worker.run_once(timeout_s=2)
        assert outcome is not None and outcome.outcome == "invalid" and outcome.error
        assert worker.run_once(timeout_s=0.2) is None
    assert (
        REGISTRY.get_sample_value("flywheel_trainers_jobs_total", {"kind": "unknown", "outcome": "invalid"})
        == before + 1
    )


def test_hold_after_publish_takes_no_new_job_until_resumed(tmp_path: Path) -> None:
    """A process that serves and trains (the demo) lets the server decide when the next
    generation may be trained: after a published policy checkpoint the worker waits."""
    topics = Topics("unit-worker-hold")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    ranges = produce_sft_samples(bus, topics, 16)
    submit_job(bus, topics, "job-hold-1", ranges)
    settings = small_worker_settings(
        tmp_path, gate={"prompts_per_character": 2, "if_tolerance": 1.0, "violation_tolerance": 1.0}
    )
    leases = RecordingLeases()
    with TrainerWorker(bus, topics, settings, leases, hold_after_publish=True) as worker:
        worker.start()
        first = wait_until(lambda: _manifests(bus, topics), 300, every_s=0.2, what="the first checkpoint")
        wait_until(lambda: worker.paused, 30, what="the worker to pause after publishing")  # right after committing
        assert [m.status for m in first] == ["published"]
        # Queued once the first was taken (one queued with it would have superseded it).
        submit_job(bus, topics, "job-hold-2", ranges)
        # Absence is only seen over a window: an unpaused worker takes the next job's lease
        # within one poll of trainer.jobs (1 s), so 2 s without it shows the hold.
        time.sleep(2.0)
        assert leases.asked == ["job-hold-1"] and len(_manifests(bus, topics)) == 1  # held: the second job waits
        worker.resume()
        wait_until(lambda: len(_manifests(bus, topics)) == 2, 300, every_s=0.2, what="the second checkpoint")
        assert leases.asked == ["job-hold-1", "job-hold-2"]
