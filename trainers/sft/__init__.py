"""Rejection-sampling SFT over trl. ``SftTrainer`` and ``rejection_sample`` live in
``trainers.sft.sft_trainer`` (imports torch); the settings are importable without it."""

from trainers.sft.sft_config import SftTrainerConfig

__all__ = ["SftTrainerConfig"]
