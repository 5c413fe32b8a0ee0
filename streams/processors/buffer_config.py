"""Settings of the sample buffer / training-job trigger."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import check_name


class BufferConfig(BaseModel):
    """When to ask for a training job. ``FLYWHEEL_STREAMS__BUFFER__<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_samples: int = Field(
        default=1000,
        gt=0,
        description="Request a job once a sample topic has this many new "
        "samples (over the partitions this process owns).",
    )
    min_samples_per_topic: dict[str, int] = Field(
        default_factory=dict,
        description="Per sample topic (base name) "
        "thresholds that replace min_samples, e.g. fewer reward-model jobs than SFT jobs.",
    )
    max_age_s: float = Field(
        default=3600.0,
        gt=0,
        description="…or once its oldest unclaimed sample has waited this long (wall clock), whatever the count.",
    )
    model: str = Field(default="policy", description="Model the jobs train (TrainJobRequest.model).")
    kinds: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "samples.reward": ("reward",),
            "samples.sft": ("sft",),
            # Preference pairs train the policy (DPO) and the Bradley–Terry reward model.
            "samples.preference": ("dpo", "reward"),
        },
        description="Job kinds per sample topic (base names): each trigger requests one job "
        "per kind over the same offset ranges. A single kind may be given as a string.",
    )

    @field_validator("kinds", mode="before")
    @classmethod
    def _one_kind_is_a_tuple(cls, value: object) -> object:
        if isinstance(value, dict):
            return {topic: (kinds,) if isinstance(kinds, str) else kinds for topic, kinds in value.items()}
        return value

    def model_post_init(self, __context: object) -> None:
        check_name(self.model, "model")
