"""The topic table as code: names, keys, value contracts, partitions, cleanup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    partitions: int
    cleanup: Literal["delete", "compact"]
    retention_ms: int | None = None
    config: dict[str, str] = field(default_factory=dict)

    def kafka_config(self) -> dict[str, str]:
        out = {"cleanup.policy": self.cleanup, **self.config}
        if self.retention_ms is not None:
            out["retention.ms"] = str(self.retention_ms)
        return out


CHAT_EVENTS = "chat.events"
CHAT_EVENTS_DLQ = "chat.events.dlq"
ENGAGEMENT_SIGNALS = "engagement.signals"
SAMPLES_REWARD = "samples.reward"
SAMPLES_SFT = "samples.sft"
SAMPLES_PREFERENCE = "samples.preference"
TRAINER_JOBS = "trainer.jobs"
MODELS_CHECKPOINTS = "models.checkpoints"
SERVING_DEPLOYMENTS = "serving.deployments"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(CHAT_EVENTS, "user_id", "ChatEvent", 8, "delete", 7 * DAY_MS),
    TopicSpec(CHAT_EVENTS_DLQ, "original key", "original bytes; reason in headers", 1, "delete", 30 * DAY_MS),
    TopicSpec(ENGAGEMENT_SIGNALS, "user_id / arm", "EngagementSignal", 4, "delete", 30 * DAY_MS),
    TopicSpec(SAMPLES_REWARD, "conversation_id", "RewardSample", 4, "delete", 90 * DAY_MS),
    TopicSpec(SAMPLES_SFT, "conversation_id", "SftSample", 4, "delete", 90 * DAY_MS),
    TopicSpec(SAMPLES_PREFERENCE, "conversation_id", "PreferenceSample", 4, "delete", 90 * DAY_MS),
    TopicSpec(TRAINER_JOBS, "job_id", "TrainJobRequest", 1, "delete", 30 * DAY_MS),
    TopicSpec(MODELS_CHECKPOINTS, "version", "CheckpointManifest", 1, "compact"),
    TopicSpec(SERVING_DEPLOYMENTS, "model / model#decision_id", "DeploymentRecord", 1, "compact"),
)
TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}
SAMPLE_TOPICS: tuple[str, ...] = (SAMPLES_REWARD, SAMPLES_SFT, SAMPLES_PREFERENCE)


@dataclass(frozen=True)
class Topics:
    """Topic names of one deployment. A ``namespace`` prefixes every name (``staging.chat.events``)
    so several environments, or tests, can share one cluster."""

    namespace: str = ""

    def name(self, base: str) -> str:
        if base not in TOPICS_BY_NAME:
            raise KeyError(f"unknown topic {base!r}")
        return f"{self.namespace}.{base}" if self.namespace else base

    def specs(self) -> tuple[TopicSpec, ...]:
        return tuple(
            TopicSpec(self.name(t.name), t.key, t.value, t.partitions, t.cleanup, t.retention_ms, t.config)
            for t in TOPICS
        )

    @property
    def chat_events(self) -> str:
        return self.name(CHAT_EVENTS)

    @property
    def chat_events_dlq(self) -> str:
        return self.name(CHAT_EVENTS_DLQ)

    @property
    def engagement_signals(self) -> str:
        return self.name(ENGAGEMENT_SIGNALS)

    @property
    def samples_reward(self) -> str:
        return self.name(SAMPLES_REWARD)

    @property
    def samples_sft(self) -> str:
        return self.name(SAMPLES_SFT)

    @property
    def samples_preference(self) -> str:
        return self.name(SAMPLES_PREFERENCE)

    @property
    def trainer_jobs(self) -> str:
        return self.name(TRAINER_JOBS)

    @property
    def models_checkpoints(self) -> str:
        return self.name(MODELS_CHECKPOINTS)

    @property
    def serving_deployments(self) -> str:
        return self.name(SERVING_DEPLOYMENTS)


DEFAULT_TOPICS = Topics()
