"""Plumbing shared by the trainers: data shapes, generation, best-of-N, loading, training."""

from trainers.common.candidates import Ranked, Scorer, rank_candidates
from trainers.common.data import Demonstration, Labelled, Pair, Prompt
from trainers.common.generation import SamplingSettings, generate_replies
from trainers.common.loading import default_device, load_policy
from trainers.common.training import LoraSettings, StepHook, TrainResult, TrainSettings, device_args

__all__ = [
    "Demonstration", "Labelled", "LoraSettings", "Pair", "Prompt", "Ranked", "SamplingSettings", "Scorer",
    "StepHook", "TrainResult", "TrainSettings", "default_device", "device_args", "generate_replies",
    "load_policy", "rank_candidates",
]
