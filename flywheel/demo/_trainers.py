"""The trainer side of the one-process deployment: base model, trainer worker, and the
planted bad generation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from schemas import (SAMPLES_PREFERENCE, TOPICS_BY_NAME, CheckpointManifest, OffsetRange, PreferenceSample, TopicSpec, Topics,
                     TrainJobRequest)

if TYPE_CHECKING:
    from flywheel.demo.runtime import DemoRuntime
    from trainers.evaluate import GateSettings
    from trainers.registry import CheckpointRegistry


def base_model_dir() -> Path:
    """The locally built tiny base model (cached by content hash)."""
    from trainers.bootstrap.base_model import ensure_base_model

    return ensure_base_model()


def registry(runtime: "DemoRuntime") -> "CheckpointRegistry":
    from trainers.registry import CheckpointRegistry, RegistrySettings

    return CheckpointRegistry(RegistrySettings(root=runtime.work_dir / "registry"))


def gate_settings(runtime: "DemoRuntime") -> "GateSettings":
    from trainers.evaluate import GateSettings

    return GateSettings(prompts_per_character=runtime.config.gate_prompts_per_character)


def publish_base(runtime: "DemoRuntime", version: str) -> CheckpointManifest:
    """Held-out numbers of the base model (the gate with no baseline), then publish it
    to the registry like any checkpoint; returns the manifest to announce."""
    from trainers.evaluate import OfflineGate

    report = OfflineGate(gate_settings(runtime)).evaluate(runtime.base_model_dir, None, None)
    manifest = CheckpointManifest(
        model=runtime.config.model, version=version, parent=None, kind="full", status="published", eval=report,
        training={"source": "trainers.bootstrap (locally built base model)"}, created_ts=datetime.now(UTC),
    )
    return registry(runtime).publish(runtime.base_model_dir, manifest).manifest


def plant_bad_job(runtime: "DemoRuntime", n_pairs: int = 400) -> str:
    """Queue a DPO job on deliberately corrupted preferences: replies that break the
    character's instructions or the content policy marked as *chosen*. The pairs go to a
    topic of their own (so the buffer never mixes them into honest jobs); the job names
    their exact offsets, like any job. Returns the job id."""
    from trainers.bootstrap import synthetic_pairs
    from trainers.bootstrap.catalogue import CHARACTERS_BY_ID

    topics = runtime.topics
    corrupted = Topics(f"{topics.namespace}-corrupted" if topics.namespace else "corrupted").samples_preference
    spec = TOPICS_BY_NAME[SAMPLES_PREFERENCE]
    runtime.bus.create_topics([TopicSpec(corrupted, spec.key, spec.value, 1, spec.cleanup, spec.retention_ms)])
    producer = runtime.bus.producer()
    now = datetime.now(UTC)
    for i, pair in enumerate(synthetic_pairs(n_pairs, seed=runtime.config.simulator.seed + 1)):
        sample = PreferenceSample(
            sample_id=f"planted-{runtime.run_id}-{i}", conversation_id=f"planted-{i}", character_id=pair.character_id,
            context=pair.context, instructions=CHARACTERS_BY_ID[pair.character_id].instructions, ts=now,
            chosen=pair.rejected, rejected=pair.chosen, source="synthetic",
        )
        producer.produce(corrupted, sample.to_json_bytes(), key=sample.conversation_id, partition=0)
    job = TrainJobRequest(
        job_id=f"dpo-planted-{runtime.run_id}", kind="dpo", model=runtime.config.model, base_version=None,
        inputs=(OffsetRange(topic=corrupted, partition=0, from_offset=0, to_offset=n_pairs),), created_ts=now,
    )
    producer.produce(topics.trainer_jobs, job.to_json_bytes(), key=job.job_id)
    producer.flush()
    return job.job_id
