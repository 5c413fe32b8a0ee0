"""Reward jobs with the production defaults: the engagement model from samples.reward and
the Bradley–Terry model from samples.preference both train, gate and publish under names
of their own (with the old default, mode "pairwise", a job on samples.reward failed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import (
    CheckpointManifest,
    EngagementLabels,
    OffsetRange,
    PreferenceSample,
    RewardSample,
    Topics,
    TrainJobRequest,
)
from streams import EmbeddedBus, TopicPartition
from tests.unit.trainers.worker_helpers import small_worker_settings
from trainers.bootstrap import synthetic_corpus, synthetic_pairs
from trainers.characters import CHARACTERS_BY_ID
from trainers.worker import InMemoryLeaseStore, TrainerWorkerSettings
from trainers.worker.worker import TrainerWorker

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]
N = 160


def _submit(bus: EmbeddedBus, topics: Topics, job_id: str, topic: str, n: int) -> None:
    job = TrainJobRequest(
        job_id=job_id,
        kind="reward",
        model="tiny",
        inputs=(OffsetRange(topic=topic, partition=0, from_offset=0, to_offset=n),),
        created_ts=datetime.now(UTC),
    )
    producer = bus.producer()
    producer.produce(topics.trainer_jobs, job.to_json_bytes(), key=job.job_id)
    producer.flush()


def _produce_samples(bus: EmbeddedBus, topics: Topics) -> None:
    producer = bus.producer()
    now = datetime.now(UTC)
    for k, item in enumerate(synthetic_corpus(N, seed=3)):
        engaged = item.follows and not item.violates
        sample = RewardSample(
            sample_id=f"r{k}",
            conversation_id=f"c{k}",
            character_id=item.character_id,
            context=item.context,
            instructions=CHARACTERS_BY_ID[item.character_id].instructions,
            ts=now,
            response=item.reply,
            labels=EngagementLabels(
                continued=engaged,
                thumbs_up=engaged and k % 5 == 0,
                instruction_following=item.follows,
                violation=item.violates,
            ),
            model_version="base",
            arm="baseline",
        )
        producer.produce(topics.samples_reward, sample.to_json_bytes(), key=sample.conversation_id, partition=0)
    for k, pair in enumerate(synthetic_pairs(N, seed=4)):
        pref = PreferenceSample(
            sample_id=f"p{k}",
            conversation_id=f"c{k}",
            character_id=pair.character_id,
            context=pair.context,
            instructions=CHARACTERS_BY_ID[pair.character_id].instructions,
            ts=now,
            chosen=pair.chosen,
            rejected=pair.rejected,
            source="synthetic",
        )
        producer.produce(topics.samples_preference, pref.to_json_bytes(), key=pref.conversation_id, partition=0)
    producer.flush()


def test_engagement_and_bradley_terry_jobs_train_with_production_defaults(tmp_path: Path) -> None:
    topics = Topics("unit-reward-jobs")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    _produce_samples(bus, topics)
    _submit(bus, topics, "reward-engagement", topics.samples_reward, N)
    _submit(bus, topics, "reward-preference", topics.samples_preference, N)
    settings = small_worker_settings(tmp_path)
    assert settings.reward == TrainerWorkerSettings().reward  # the production reward settings
    with TrainerWorker(bus, topics, settings, InMemoryLeaseStore(), worker_id="w1") as worker:
        outcomes = [worker.run_once(timeout_s=5), worker.run_once(timeout_s=5)]
    assert all(o is not None and o.outcome in ("published", "rejected") for o in outcomes), outcomes
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topics.models_checkpoints, 0): 0})
    manifests = {
        m.model: m for m in (CheckpointManifest.model_validate_json(r.value) for r in consumer.consume(10, 0.2))
    }
    assert set(manifests) == {"tiny-reward", "tiny-preference"}
    for m in manifests.values():
        assert m.job_kind == "reward" and m.training["samples"] == N, m
        assert m.eval is not None and m.eval.reward_score is not None  # held-out pairwise accuracy
    # The engagement model kept a fifth of the conversations out of training for its own check.
    engagement = manifests["tiny-reward"]
    assert engagement.eval is not None and engagement.eval.auc is not None
    assert engagement.eval.calibration_error is not None
    assert 0.6 * N < float(engagement.training["metric.examples"] or 0) < 0.95 * N
    assert manifests["tiny-preference"].eval is not None and manifests["tiny-preference"].eval.auc is None
