"""Settings of the GRPO trainer."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainers.common.train_config import TrainerConfig


class GrpoTrainerConfig(TrainerConfig):
    """Online RL (GRPO) on near-policy prompts (contexts of recent traffic), rewarded by the
    verifiable checks and the engagement reward model, with a KL penalty to the starting policy."""

    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(
        default=16, gt=0, description="Completions per device per step (a multiple of num_generations)."
    )
    num_generations: int = Field(
        default=4, ge=2, description="Completions per prompt; advantages are relative within this group."
    )
    max_completion_length: int = Field(default=64, gt=0, description="Longest sampled completion in tokens.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature during training.")
    beta: float = Field(
        default=0.04,
        ge=0,
        description="KL penalty towards the starting (reference) policy; 0 keeps no reference model and "
        "lets the policy drift as far as the reward pulls it.",
    )
    max_steps: int = Field(default=30, gt=0, description="Optimiser steps (GRPO is budgeted in steps, not epochs).")
    rm_weight: float = Field(
        default=0.5,
        ge=0,
        description="Weight of tanh(engagement reward model) next to the verifiable checks (weight 1). "
        "Without a published engagement model the checks alone reward.",
    )
    max_prompts: int = Field(
        default=128, gt=0, description="Most recent contexts of the job considered (near-policy prompts)."
    )
    select_candidates: int = Field(
        default=4,
        ge=0,
        description="Replies sampled per prompt to measure how much their rewards differ "
        "(0 = no selection: train on every prompt, skipped groups are not counted).",
    )
    select_fraction: float = Field(
        default=0.5, gt=0, le=1, description="Share of the prompts kept: those whose replies differ most in reward."
    )
    min_reward_spread: float = Field(
        default=0.05,
        ge=0,
        description="A prompt whose sampled replies' rewards have a standard deviation at or below "
        "this gives a group with (almost) zero advantage: it is skipped and counted.",
    )

    @model_validator(mode="after")
    def _divisible(self) -> GrpoTrainerConfig:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by num_generations ({self.num_generations}); "
                "change one of them"
            )
        if self.select_candidates == 1:
            raise ValueError("select_candidates (1) cannot measure a spread; use 0 (no selection) or 2 or more")
        return self
