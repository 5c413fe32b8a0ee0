"""Reward models: pairwise Bradley–Terry and pointwise P(continued).
``RewardModelTrainer`` lives in ``trainers.reward.reward_trainer``; ``RewardModel``,
``BlendedScorer`` and ``check_score`` in ``trainers.reward.scoring`` (both import torch)."""

from trainers.reward.reward_config import RewardTrainerConfig

__all__ = ["RewardTrainerConfig"]
