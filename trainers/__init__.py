"""Trainers: base-model bootstrap, reward model / SFT / DPO / GRPO over trl, the offline
evaluation gate, the checkpoint registry and the trainer worker.

Import the subpackages (``trainers.bootstrap``, ``trainers.registry``, ...) directly."""

__all__: list[str] = []
