"""Settings of the DPO trainer."""

from __future__ import annotations

from pydantic import Field

from trainers.common.train_config import TrainerConfig


class DpoTrainerConfig(TrainerConfig):
    """Online DPO: best-vs-worst pairs of the current policy's own replies to the job's
    contexts, ranked by the scorer (verifiable checks, engagement model breaking ties),
    plus the pairs from samples.preference (regenerations, arms)."""

    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the pairs.")
    beta: float = Field(
        default=0.1, gt=0, description="Strength of the KL pull towards the reference (starting) policy."
    )
    num_candidates: int = Field(
        default=4, ge=0, description="Sampled replies per context for best-vs-worst pairs (0 = only the given pairs)."
    )
    min_gap: float = Field(
        default=0.1,
        ge=0,
        description="Keep a best-vs-worst pair only if the scores differ by at least this (0.1: a "
        "difference the engagement model alone can make between two replies that pass the same checks).",
    )
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the candidates.")
    max_new_tokens: int = Field(default=72, gt=0, description="Longest sampled candidate.")
