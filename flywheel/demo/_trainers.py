"""The trainer side of the one-process deployment: base model, trainer worker, and the
planted bad generation."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.demo.report import RewardModelResult
from schemas import (
    SAMPLES_PREFERENCE,
    TOPICS_BY_NAME,
    CheckpointManifest,
    OffsetRange,
    PreferenceSample,
    Topics,
    TopicSpec,
    TrainJobRequest,
)

if TYPE_CHECKING:
    from flywheel.demo.runtime import DemoRuntime


def base_model_dir() -> Path:
    """The locally built tiny base model (cached by content hash; built on first use)."""
    from trainers.bootstrap.base_model import ensure_base_model
    from trainers.bootstrap.base_model_config import BaseModelConfig

    return ensure_base_model(BaseModelConfig())


def publish_base(runtime: DemoRuntime, version: str) -> CheckpointManifest:
    """Register the bootstrap base model in the registry (as the worker would), evaluate it
    on the held-out prompts (the gate with no baseline), and return its manifest with
    those numbers, ready to announce on models.checkpoints."""
    from trainers.evaluate import OfflineGate
    from trainers.registry import CheckpointRegistry
    from trainers.worker.worker import register_base_model

    settings = runtime.worker_settings
    if version != settings.base_version:
        raise ValueError(f"the worker registers the base model as {settings.base_version!r}, not {version!r}")
    checkpoint = register_base_model(CheckpointRegistry(settings.registry), runtime.config.model, settings)
    with runtime.load_lock:
        report = OfflineGate(settings.gate).evaluate(checkpoint.path, None, None)
    return checkpoint.manifest.model_copy(update={"eval": report})


def export_model(runtime: DemoRuntime, version: str, target: Path) -> Path:
    """Copy a verified checkpoint out of the run's registry into ``target`` (replaced if
    present): the registry is scratch space and goes when the run stops."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(checkpoint_dir(runtime, version), target)
    return target


def checkpoint_dir(runtime: DemoRuntime, version: str) -> Path:
    """The verified folder of ``version`` in the run's registry (rejected ones included)."""
    from trainers.registry import CheckpointRegistry

    return CheckpointRegistry(runtime.worker_settings.registry).open(runtime.config.model, version).path


def plant_bad_job(runtime: DemoRuntime, n_pairs: int = 400, created: datetime | None = None) -> str:
    """Queue a DPO job on deliberately corrupted preferences: replies that break the
    character's instructions or the content policy marked as *chosen*. The pairs go to a
    topic of their own (so the buffer never mixes them into honest jobs); the job names
    their exact offsets, like any job, and trains on them alone (no pairs of the policy's
    own samples). ``created``: the job's ``created_ts`` (default now). Returns the job id."""
    from trainers.bootstrap import synthetic_pairs
    from trainers.characters import CHARACTERS_BY_ID

    topics = runtime.topics
    corrupted = Topics(f"{topics.namespace}-corrupted" if topics.namespace else "corrupted").samples_preference
    spec = TOPICS_BY_NAME[SAMPLES_PREFERENCE]
    runtime.bus.create_topics([TopicSpec(corrupted, spec.key, spec.value, 1, spec.cleanup, spec.retention_ms)])
    producer = runtime.bus.producer()
    now = created or datetime.now(UTC)
    for i, pair in enumerate(synthetic_pairs(n_pairs, seed=runtime.config.simulator.seed + 1)):
        sample = PreferenceSample(
            sample_id=f"planted-{runtime.run_id}-{i}",
            conversation_id=f"planted-{i}",
            character_id=pair.character_id,
            context=pair.context,
            instructions=CHARACTERS_BY_ID[pair.character_id].instructions,
            ts=now,
            chosen=pair.rejected,
            rejected=pair.chosen,
            source="synthetic",
        )
        producer.produce(corrupted, sample.to_json_bytes(), key=sample.conversation_id, partition=0)
    job = TrainJobRequest(
        job_id=f"dpo-planted-{runtime.run_id}",
        kind="dpo",
        model=runtime.config.model,
        base_version=None,
        inputs=(OffsetRange(topic=corrupted, partition=0, from_offset=0, to_offset=n_pairs),),
        created_ts=now,
        config={"num_candidates": 0},
        priority=1,  # the next generation, before policy jobs claimed after it
    )
    producer.produce(topics.trainer_jobs, job.to_json_bytes(), key=job.job_id)
    producer.flush()
    return job.job_id


def reward_models(runtime: DemoRuntime) -> tuple[RewardModelResult, ...]:
    """Every reward model the run's worker trained, with its held-out numbers."""
    from trainers.registry import CheckpointRegistry

    settings = runtime.worker_settings
    registry = CheckpointRegistry(settings.registry)
    out = []
    for suffix in (settings.reward_model_suffix, settings.preference_model_suffix):
        for m in registry.list(runtime.config.model + suffix):
            out.append(
                RewardModelResult(
                    model=m.model,
                    version=m.version,
                    status=m.status,
                    auc=m.eval.auc if m.eval else None,
                    calibration_error=m.eval.calibration_error if m.eval else None,
                    pairwise_accuracy=m.eval.reward_score if m.eval else None,
                    n_train=int(m.training.get("metric.examples") or 0),
                )
            )
    return tuple(out)
