"""Settings of the reward-model trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainers.common.train_config import TrainerConfig


class RewardTrainerConfig(TrainerConfig):
    """Reward model: pairwise Bradley–Terry (trl RewardTrainer) on preference pairs, or
    pointwise P(continued | context, reply) on engagement-labelled replies."""

    mode: Literal["auto", "pairwise", "pointwise"] = Field(
        default="auto",
        description="Which objective to train; auto follows the job's samples: the engagement model "
        "(pointwise) from samples.reward, Bradley–Terry (pairwise) from samples.preference.",
    )
    learning_rate: float = Field(default=1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the training data.")
    center_rewards_coefficient: float | None = Field(
        default=None, description="Pairwise only: pull mean reward towards 0 (trl)."
    )


def resolve_mode(mode: str, has_labelled: bool) -> Literal["pairwise", "pointwise"]:
    """The objective a reward job trains: ``mode`` unless auto, else what its samples allow."""
    if mode == "pointwise" or (mode == "auto" and has_labelled):
        return "pointwise"
    return "pairwise"
