"""Training job requests (`trainer.jobs`) and checkpoint manifests (`models.checkpoints`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas._base import SCHEMA_VERSION, Message, SchemaVersion, UtcDatetime

JobKind = Literal["reward", "sft", "dpo", "grpo"]
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(value: str, what: str = "name") -> str:
    """Model names and versions become directory names: no separators, no traversal."""
    if not _VERSION_RE.match(value) or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} must match {_VERSION_RE.pattern} (no '/', no '..')")
    return value


class OffsetRange(Message):
    """Half-open offset range [from_offset, to_offset) of one topic partition."""

    topic: str
    partition: int = Field(ge=0)
    from_offset: int = Field(ge=0)
    to_offset: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> OffsetRange:
        if self.to_offset < self.from_offset:
            raise ValueError(f"to_offset ({self.to_offset}) < from_offset ({self.from_offset})")
        return self

    @property
    def count(self) -> int:
        return self.to_offset - self.from_offset


class TrainJobRequest(Message):
    """Train ``kind`` on exactly ``inputs``, starting from ``base_version`` of ``model``."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    job_id: str = Field(description="Deterministic from the input ranges: the same ranges give the same id.")
    kind: JobKind
    model: str
    base_version: str | None = Field(
        default=None, description="Checkpoint to start from; None = the model's current baseline."
    )
    inputs: tuple[OffsetRange, ...] = Field(min_length=1)
    created_ts: UtcDatetime
    config: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Overrides of the trainer's settings."
    )
    priority: int = Field(
        default=0,
        description="Taken before waiting jobs of lower priority (an operator's job that must be the next "
        "generation); a newer job of the same kind and at least this priority supersedes it.",
    )

    _check_model = field_validator("model")(lambda v: check_name(v, "model"))


class FileDigest(Message):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class EvalReport(Message):
    """Offline gate result: candidate vs the serving baseline on held-out prompts."""

    baseline_version: str | None
    prompts: int
    instruction_following: float
    violation_rate: float
    reward_score: float | None = None
    baseline_instruction_following: float | None = None
    baseline_violation_rate: float | None = None
    baseline_reward_score: float | None = None
    win_rate: float | None = Field(default=None, description="Reward-model win rate of candidate vs baseline replies.")
    rm_predicted_lift: float | None = Field(
        default=None,
        description="Engagement model's predicted continue-rate lift of candidate over baseline replies "
        "(mean predicted probability, paired by held-out prompt).",
    )
    rm_predicted_lift_ci_low: float | None = Field(default=None, description="Lower end of its 95 % interval.")
    rm_predicted_lift_ci_high: float | None = Field(default=None, description="Upper end of its 95 % interval.")
    auc: float | None = Field(
        default=None, description="Engagement reward model: ROC AUC on held-out labelled traffic."
    )
    calibration_error: float | None = Field(
        default=None, description="Engagement reward model: expected calibration error on held-out labelled traffic."
    )
    style_drift: dict[str, float] = Field(
        default_factory=dict, description="Candidate minus baseline: mean words, emoji rate, question rate…"
    )
    instruction_following_diff: float | None = Field(
        default=None, description="Candidate minus baseline instruction following, paired by held-out prompt."
    )
    instruction_following_diff_ci_low: float | None = Field(default=None, description="Lower end of its interval.")
    instruction_following_diff_ci_high: float | None = Field(default=None, description="Upper end of its interval.")
    violation_rate_diff: float | None = Field(
        default=None, description="Candidate minus baseline violation rate, paired by held-out prompt."
    )
    violation_rate_diff_ci_low: float | None = Field(default=None, description="Lower end of its interval.")
    violation_rate_diff_ci_high: float | None = Field(default=None, description="Upper end of its interval.")
    anchor_version: str | None = Field(
        default=None, description="The base model the candidate was also compared with (None: the baseline is it)."
    )
    anchor_instruction_following: float | None = None
    anchor_violation_rate: float | None = None
    passed: bool
    reasons: tuple[str, ...] = ()
    flags: tuple[str, ...] = Field(
        default=(), description="Warnings that do not reject, e.g. win rate above the ceiling."
    )


class CheckpointManifest(Message):
    """What a checkpoint is, where it came from, how it scored. Keyed by ``version``.

    A ``lora`` checkpoint is an adapter over one full checkpoint of the same model, named
    by ``lora_base``: the base a server (vLLM) must run to apply it. Generations trained
    as LoRA continue their parent's adapter, so a lineage keeps one ``lora_base``."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    model: str
    version: str
    parent: str | None
    kind: Literal["full", "lora"]
    lora_base: str | None = Field(
        default=None,
        description="kind 'lora' only: the version (same model) of the full checkpoint the adapter applies to. "
        "None for full checkpoints and for adapters published before this field existed.",
    )
    job_id: str | None = None
    job_kind: JobKind | None = None
    files: tuple[FileDigest, ...] = ()
    training: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    lineage: tuple[OffsetRange, ...] = ()
    eval: EvalReport | None = None
    status: Literal["published", "rejected", "retired"]
    created_ts: UtcDatetime
    uri: str | None = Field(default=None, description="Where the files live (registry path or object-store URL).")

    _check_model = field_validator("model")(lambda v: check_name(v, "model"))
    _check_version = field_validator("version")(lambda v: check_name(v, "version"))

    @field_validator("lora_base")
    @classmethod
    def _check_lora_base(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "lora_base")

    @model_validator(mode="after")
    def _lora_base_only_for_adapters(self) -> CheckpointManifest:
        if self.lora_base is not None and self.kind != "lora":
            raise ValueError(f"lora_base ({self.lora_base!r}) is only for kind 'lora', not {self.kind!r}; drop it")
        return self
