"""Rejection-sampling SFT (trl SFTTrainer)."""

from trainers.sft.sft_config import SftSettings
from trainers.sft.sft_trainer import SftTrainer, rejection_sample

__all__ = ["SftSettings", "SftTrainer", "rejection_sample"]
