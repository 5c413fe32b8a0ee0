"""Shared helpers of the trainer worker tests: samples on the bus, a job naming them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from schemas import OffsetRange, SftSample, Topics, TrainJobRequest
from streams import Bus
from trainers.bootstrap import synthetic_corpus
from trainers.characters import CHARACTERS_BY_ID
from trainers.worker import TrainerWorkerSettings


def produce_sft_samples(bus: Bus, topics: Topics, n: int, seed: int = 5) -> list[OffsetRange]:
    """``n`` compliant SFT samples on partition 0 of samples.sft; returns the range."""
    producer = bus.producer()
    now = datetime.now(UTC)
    items = [i for i in synthetic_corpus(4 * n, seed=seed) if i.follows and not i.violates][:n]
    for k, item in enumerate(items):
        sample = SftSample(
            sample_id=f"s{k}",
            conversation_id=f"c{k}",
            character_id=item.character_id,
            context=item.context,
            instructions=CHARACTERS_BY_ID[item.character_id].instructions,
            ts=now,
            response=item.reply,
            model_version="base",
        )
        producer.produce(topics.samples_sft, sample.to_json_bytes(), key=sample.conversation_id, partition=0)
    producer.flush()
    return [OffsetRange(topic=topics.samples_sft, partition=0, from_offset=0, to_offset=len(items))]


def submit_job(
    bus: Bus, topics: Topics, job_id: str, inputs: list[OffsetRange], model: str = "tiny", **config: object
) -> TrainJobRequest:
    job = TrainJobRequest(
        job_id=job_id, kind="sft", model=model, inputs=tuple(inputs), created_ts=datetime.now(UTC), config=config
    )  # type: ignore[arg-type]
    producer = bus.producer()
    producer.produce(topics.trainer_jobs, job.to_json_bytes(), key=job.job_id)
    producer.flush()
    return job


def small_worker_settings(tmp: Path, **overrides: object) -> TrainerWorkerSettings:
    """Tiny budgets: a few training steps, a short gate."""
    base: dict[str, object] = {
        "registry": {"root": str(tmp / "registry")},
        "work_dir": str(tmp / "work"),
        "gate": {"prompts_per_character": 4, "samples_per_prompt": 1},
        "sft": {"num_candidates": 1, "epochs": 1.0},
        "lease_ttl_s": 6.0,
        "lease_renew_s": 1.0,
        "session_timeout_ms": 6000,
        "retry_backoff_s": 0.5,
    }
    base.update(overrides)
    return TrainerWorkerSettings.model_validate(base)
