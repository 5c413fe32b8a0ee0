"""DPO from preference samples and best-vs-worst candidates. ``DpoTrainer`` lives in
``trainers.dpo.dpo_trainer`` (imports torch); the settings are importable without it."""

from trainers.dpo.dpo_config import DpoTrainerConfig

__all__ = ["DpoTrainerConfig"]
