"""GRPO rewarded by the verifiable instruction checks and the reward model.
``GrpoTrainer`` lives in ``trainers.grpo.grpo_trainer`` (imports torch)."""

from trainers.grpo.grpo_config import GrpoTrainerConfig

__all__ = ["GrpoTrainerConfig"]
