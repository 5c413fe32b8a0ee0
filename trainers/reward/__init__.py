"""Reward models (pairwise Bradley–Terry, pointwise P(continued)) and reply scoring."""

from trainers.reward.reward_config import RewardSettings
from trainers.reward.reward_trainer import RewardModelTrainer
from trainers.reward.scoring import BlendedScorer, RewardModel, check_score

__all__ = ["BlendedScorer", "RewardModel", "RewardModelTrainer", "RewardSettings", "check_score"]
