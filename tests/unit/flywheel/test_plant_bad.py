"""`--plant-bad N` plants exactly generation N, whatever policy jobs wait in trainer.jobs.

The orchestrator queues the planted job when the N−1 generations before it are decided
(the worker holds after every generation, so nothing trains in between) with priority,
and the worker skips the policy jobs queued before it (superseded by a newer job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flywheel.demo._tracker import Tracker as _Tracker
from flywheel.demo._tracker import plant_due
from flywheel.demo.config import DemoConfig
from schemas import CanaryDecision, CheckpointManifest, EvalReport, OffsetRange, Topics, TrainJobRequest
from streams import EmbeddedBus


def _manifest(job: TrainJobRequest, passed: bool = True) -> CheckpointManifest:
    report = EvalReport(
        baseline_version="base",
        prompts=4,
        instruction_following=0.8,
        violation_rate=0.05,
        passed=passed,
        reasons=() if passed else ("violation rate rose",),
    )
    return CheckpointManifest(
        model=job.model,
        version=f"v-{job.job_id}",
        parent="base",
        kind="full",
        job_id=job.job_id,
        job_kind=job.kind,
        eval=report,
        status="published" if passed else "rejected",
        created_ts=datetime.now(UTC),
    )


def _decide(tracker: _Tracker, version: str, action: str = "promote") -> None:
    tracker.on_decision(
        CanaryDecision(
            decision_id=f"{version}-{action}",
            model="policy",
            baseline_version="base",
            candidate_version=version,
            action=action,  # type: ignore[arg-type]
            reason=action,
            share_bp_before=2000,
            share_bp_after=0,
            ts=datetime.now(UTC),
        ),
        1.0,
    )


def _superseded(kind: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("flywheel_trainers_jobs_total", {"kind": kind, "outcome": "superseded"})
    return value or 0.0


def _job(job_id: str, created: datetime, kind: str = "sft") -> TrainJobRequest:
    return TrainJobRequest(
        job_id=job_id,
        kind=kind,  # type: ignore[arg-type]
        model="policy",
        inputs=(OffsetRange(topic="samples.sft", partition=0, from_offset=0, to_offset=1),),
        created_ts=created,
    )


@pytest.mark.parametrize("n", [1, 2, 3])
def test_plant_is_due_once_exactly_the_earlier_generations_are_decided(n: int) -> None:
    tracker = _Tracker("policy", "base")
    assert not plant_due(None, tracker)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(1, n):
        assert not plant_due(n, tracker)  # too early: generation k has not come yet
        g = tracker.on_manifest(_manifest(_job(f"h{k}", t0)), float(k))
        assert g is not None and g.number == k
        assert not plant_due(n, tracker)  # generation k is in canary
        _decide(tracker, g.manifest.version, "promote" if k % 2 else "rollback")
    assert plant_due(n, tracker)
    tracker.planted_job = "dpo-planted"
    assert not plant_due(n, tracker)  # once


def test_a_rejected_generation_is_decided_at_once() -> None:
    tracker = _Tracker("policy", "base")
    tracker.on_manifest(_manifest(_job("h1", datetime.now(UTC)), passed=False), 1.0)
    assert plant_due(2, tracker) and not plant_due(3, tracker)


@pytest.mark.model  # imports the trainer worker (torch); trains nothing
@pytest.mark.timeout(120)
def test_queued_policy_jobs_are_superseded_and_the_planted_job_is_generation_n(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.demo import _trainers
    from trainers.worker import InMemoryLeaseStore, TrainerWorkerSettings
    from trainers.worker.worker import TrainerWorker

    topics = Topics("unit-plant")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    producer = bus.producer()

    def submit(job: TrainJobRequest) -> None:
        producer.produce(topics.trainer_jobs, job.to_json_bytes(), key=job.job_id)
        producer.flush()

    trained: list[TrainJobRequest] = []

    def fake_process(job: TrainJobRequest, keeper: Any) -> tuple[CheckpointManifest, str]:
        trained.append(job)  # what the worker would train next, without training it
        manifest = _manifest(job, passed=job.job_id != "dpo-planted-run")
        return manifest, manifest.status

    settings = TrainerWorkerSettings(registry={"root": tmp_path / "registry"}, work_dir=tmp_path / "work")
    worker = TrainerWorker(bus, topics, settings, InMemoryLeaseStore(), hold_after_publish=True)
    monkeypatch.setattr(worker, "_process", fake_process)
    tracker = _Tracker("policy", "base")
    t0 = datetime.now(UTC) - timedelta(minutes=5)

    submit(_job("h1", t0))
    outcome = worker.run_once(timeout_s=2)
    assert outcome is not None and outcome.manifest is not None and worker.paused  # held after generation 1
    g1 = tracker.on_manifest(outcome.manifest, 1.0)
    assert g1 is not None and g1.number == 1
    # While generation 1 is in canary the buffer keeps claiming samples: policy and reward jobs queue.
    submit(_job("h2", t0 + timedelta(seconds=10)))
    submit(_job("r1", t0 + timedelta(seconds=20), kind="reward"))
    submit(_job("h3", t0 + timedelta(seconds=30), kind="dpo"))
    _decide(tracker, g1.manifest.version)
    assert plant_due(2, tracker)

    planted_at = datetime.now(UTC)
    superseded_before = {k: _superseded(k) for k in ("sft", "dpo")}
    runtime = SimpleNamespace(
        topics=topics, bus=bus, run_id="run", config=DemoConfig(model="policy", plant_bad_generation=2)
    )
    tracker.planted_job = _trainers.plant_bad_job(runtime, n_pairs=8, created=planted_at)  # type: ignore[arg-type]
    submit(_job("h4", planted_at + timedelta(seconds=1)))  # claimed after the plant: waits behind it
    worker.resume()

    outcomes = [worker.run_once(timeout_s=2) for _ in range(2)]
    assert [(o.job_id, o.outcome) for o in outcomes if o is not None] == [
        ("r1", "published"),  # reward models first; they are not generations: never superseded
        ("dpo-planted-run", "rejected"),
    ]
    assert {k: _superseded(k) - v for k, v in superseded_before.items()} == {"sft": 1, "dpo": 1}  # h2, h3
    assert [j.job_id for j in trained] == ["h1", "r1", "dpo-planted-run"]
    assert trained[-1].config == {"num_candidates": 0}  # the corrupted pairs alone
    for o in outcomes:
        if o is not None and o.manifest is not None and o.manifest.job_kind != "reward":
            g = tracker.on_manifest(o.manifest, 2.0)
    assert g is not None and g.number == 2 and g.planted and g.decision == "rejected"
    assert worker.paused  # held after the planted generation too, rejected as it was (run_once steps regardless)
    worker.resume()
    last = worker.run_once(timeout_s=2)
    assert last is not None and last.job_id == "h4" and last.outcome == "published"
    worker.stop()
