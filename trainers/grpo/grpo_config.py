"""Settings of the GRPO trainer."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainers.common.train_config import TrainSettings


class GrpoSettings(TrainSettings):
    """Online RL (GRPO) with the verifiable instruction checks and the reward model as
    rewards, on the prompts where the current policy scores low or varies most."""

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
        default=0.0, ge=0, description="KL penalty towards the starting policy (0 = none, no reference model kept)."
    )
    max_steps: int = Field(default=30, gt=0, description="Optimiser steps (GRPO is budgeted in steps, not epochs).")
    rm_weight: float = Field(
        default=0.25, ge=0, description="Weight of the reward model's score next to the verifiable checks (weight 1)."
    )
    select_fraction: float = Field(
        default=0.5, gt=0, le=1, description="Share of prompts kept: those with the lowest mean or most varied score."
    )
    select_candidates: int = Field(
        default=2, ge=0, description="Samples per prompt used to pick prompts (0 = keep every prompt)."
    )

    @model_validator(mode="after")
    def _divisible(self) -> GrpoSettings:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by num_generations ({self.num_generations}); "
                "change one of them"
            )
        return self
