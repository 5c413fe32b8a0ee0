"""Plumbing shared by the trainers. Torch-free here: data shapes and settings. The torch
side lives in its modules: ``trainers.common.generation`` (generate_replies),
``trainers.common.candidates`` (rank_candidates), ``trainers.common.loading``
(load_policy), ``trainers.common.training`` (TrainResult, run_trainer, save_model)."""

from trainers.common.data import Demonstration, Labelled, Pair, Prompt
from trainers.common.train_config import LoraAdapterConfig, TrainerConfig

__all__ = ["Demonstration", "Labelled", "LoraAdapterConfig", "Pair", "Prompt", "TrainerConfig"]
