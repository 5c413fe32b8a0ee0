"""DPO from preference samples and best-vs-worst candidates (trl DPOTrainer)."""

from trainers.dpo.dpo_config import DpoSettings
from trainers.dpo.dpo_trainer import DpoTrainer, best_vs_worst_pairs

__all__ = ["DpoSettings", "DpoTrainer", "best_vs_worst_pairs"]
