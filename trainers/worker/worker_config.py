"""Settings of the trainer worker (``flywheel trainers run``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from trainers.bootstrap.base_model_config import BaseModelConfig
from trainers.dpo.dpo_config import DpoTrainerConfig
from trainers.evaluate.gate_config import GateConfig
from trainers.grpo.grpo_config import GrpoTrainerConfig
from trainers.registry.registry_config import RegistryConfig
from trainers.reward.reward_config import RewardTrainerConfig
from trainers.sft.sft_config import SftTrainerConfig


def _default_work_dir() -> Path:
    return Path.home() / ".cache" / "flywheel" / "trainer-work"


class TrainerWorkerSettings(BaseModel):
    """Everything a trainer worker needs: group, lease, registry, gate and each trainer's
    defaults (a job's ``config`` overrides the trainer's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: str = Field(
        default="flywheel-trainers", description="Consumer group on trainer.jobs; workers in one group share the jobs."
    )
    lease_ttl_s: float = Field(
        default=30.0, gt=0, description="A job lease expires this long after its holder stops renewing it."
    )
    lease_renew_s: float = Field(
        default=5.0, gt=0, description="How often the holder renews its lease (well under lease_ttl_s)."
    )
    lease_prefix: str = Field(default="flywheel:trainers:lease:", description="Redis key prefix of job leases.")
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="Kafka group session timeout: how soon a dead worker's jobs move to another.",
    )
    max_poll_interval_ms: int = Field(
        default=3_600_000,
        ge=10_000,
        description="Longest job before Kafka assumes the worker is stuck (the lease is the real liveness check).",
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0, description="Give up reading a job's sample ranges after this long."
    )
    read_batch: int = Field(
        default=64,
        gt=0,
        description="Jobs read from trainer.jobs per poll; all waiting jobs are read before one is taken.",
    )
    replay_share: float = Field(
        default=0.5,
        ge=0,
        description="A policy job also reads earlier samples of its partitions, up to this share of its own "
        "(a bounded replay of curated data before its ranges; 0 = its ranges only).",
    )
    reward_replay_share: float = Field(
        default=1.0,
        ge=0,
        description="The same for reward-model jobs, which train from scratch and so want more history.",
    )
    replay_max_samples: int = Field(
        default=4000, ge=0, description="At most this many replayed records per job, whatever the share."
    )
    retry_backoff_s: float = Field(
        default=2.0, ge=0, description="Wait before looking at a job whose lease another worker holds."
    )
    work_dir: Path = Field(
        default_factory=_default_work_dir, description="Scratch space for checkpoints before they are published."
    )
    base_version: str = Field(
        default="base", description="Version name of the base model (imported or bootstrap) in the registry."
    )
    base_dir: Path | None = Field(
        default=None,
        description="A full Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer with a "
        "chat template), e.g. the base vLLM serves: published as <model>/<base_version> instead of the tiny "
        "bootstrap model, so LoRA generations (lora.enabled) are adapters vLLM can apply to it. Every worker host "
        "must be able to read it; `flywheel registry import-base` does the same once, by hand.",
    )
    reward_model_suffix: str = Field(
        default="-reward",
        description="Engagement reward models (pointwise, from samples.reward) are published as "
        "<model><suffix>; the latest that passed its gate guides policy training.",
    )
    preference_model_suffix: str = Field(
        default="-preference",
        description="Bradley–Terry reward models (pairwise, from samples.preference) are published as <model><suffix>.",
    )
    min_reward_accuracy: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="A reward model passes the gate with at least this held-out pairwise accuracy.",
    )
    reward_held_out_share: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="Share of an engagement job's conversations held out of training for its AUC and calibration check.",
    )
    min_reward_auc: float = Field(
        default=0.6, ge=0, le=1, description="An engagement reward model needs at least this held-out ROC AUC."
    )
    max_reward_calibration_error: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="…and at most this held-out expected calibration error (predicted vs observed engagement).",
    )
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    bootstrap: BaseModelConfig = Field(default_factory=BaseModelConfig)
    sft: SftTrainerConfig = Field(default_factory=SftTrainerConfig)
    dpo: DpoTrainerConfig = Field(default_factory=DpoTrainerConfig)
    grpo: GrpoTrainerConfig = Field(default_factory=GrpoTrainerConfig)
    reward: RewardTrainerConfig = Field(default_factory=RewardTrainerConfig)
