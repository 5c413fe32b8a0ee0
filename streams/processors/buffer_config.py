"""Settings of the sample buffer / training-job trigger."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import check_name

PolicyRecipe = Literal["sft", "dpo", "grpo"]
"""How a policy generation is trained: rejection-sampling SFT, online DPO, or GRPO."""
POLICY_RECIPES: tuple[str, ...] = get_args(PolicyRecipe)
POLICY = "policy"
"""The job kind in ``BufferConfig.kinds`` that stands for the configured recipe."""


class BufferConfig(BaseModel):
    """When to ask for a training job, and which. ``FLYWHEEL_STREAMS__BUFFER__<FIELD>``."""

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
    recipe: PolicyRecipe = Field(
        default="sft",
        description="Policy recipe of every generation: the job kind requested where `kinds` says "
        "'policy'. sft = rejection-sampling SFT; dpo = online DPO (the serving policy's own samples "
        "ranked by the reward model, plus the pairs in samples.preference); grpo = GRPO on the "
        "job's contexts, rewarded by the engagement model and the verifiers.",
    )
    kinds: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "samples.reward": ("reward",),
            "samples.sft": (POLICY,),
            # Preference pairs train the policy and the Bradley–Terry reward model.
            "samples.preference": (POLICY, "reward"),
        },
        description="Job kinds per sample topic (base names): each trigger requests one job "
        "per kind over the same offset ranges. 'policy' is the configured recipe; the topics that "
        "name it are claimed together, so one policy job reads them all (SFT contexts and preference "
        "pairs alike). A single kind may be given as a string.",
    )

    @field_validator("kinds", mode="before")
    @classmethod
    def _one_kind_is_a_tuple(cls, value: object) -> object:
        if isinstance(value, dict):
            return {topic: (kinds,) if isinstance(kinds, str) else kinds for topic, kinds in value.items()}
        return value

    def model_post_init(self, __context: object) -> None:
        check_name(self.model, "model")

    def job_kinds(self, topic: str) -> tuple[str, ...]:
        """The job kinds a trigger on ``topic`` (base name) requests, 'policy' resolved to the recipe."""
        return tuple(self.recipe if k == POLICY else k for k in self.kinds[topic])

    def policy_topics(self) -> tuple[str, ...]:
        """Topics (base names) whose samples the policy job reads; claimed together."""
        return tuple(t for t, kinds in self.kinds.items() if POLICY in kinds)
