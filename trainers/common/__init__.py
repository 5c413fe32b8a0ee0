"""Plumbing shared by the trainers: generation, model loading, devices, datasets."""

from trainers.common.generation import SamplingSettings, generate_replies

__all__ = ["SamplingSettings", "generate_replies"]
