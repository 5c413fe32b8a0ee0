"""Settings of the rejection-sampling SFT trainer."""

from __future__ import annotations

from pydantic import Field

from trainers.common.train_config import TrainerConfig


class SftTrainerConfig(TrainerConfig):
    """SFT on rejection-sampled data: for each context, ``num_candidates`` replies from the
    current policy (and the curated reply) are scored; the best is kept if it scores at
    least ``min_score``."""

    learning_rate: float = Field(default=1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(default=2.0, gt=0, description="Passes over the kept examples.")
    num_candidates: int = Field(
        default=4, ge=0, description="Replies sampled from the current policy per context (0 = curated replies only)."
    )
    include_curated: bool = Field(
        default=True, description="Let the curated reply from samples.sft compete with the sampled ones."
    )
    min_score: float = Field(
        default=1.0,
        description="Keep a context's best reply only if its score reaches this (1.0 = every check passes, no violation).",
    )
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the candidates.")
    max_new_tokens: int = Field(default=72, gt=0, description="Longest sampled candidate.")
    assistant_only_loss: bool = Field(
        default=True, description="Loss on the reply tokens only (needs {% generation %} in the chat template)."
    )
