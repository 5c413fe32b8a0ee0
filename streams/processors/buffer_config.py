"""Settings of the sample buffer / training-job trigger."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
    kinds: dict[str, str] = Field(
        default_factory=lambda: {"samples.reward": "reward", "samples.sft": "sft", "samples.preference": "dpo"},
        description="Job kind per sample topic (base names).",
    )

    def model_post_init(self, __context: object) -> None:
        check_name(self.model, "model")
