"""Settings of the locally built tiny base model (no model hub)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "flywheel" / "models"


class BaseModelConfig(BaseModel):
    """How the development / demo base model is built. Every field enters the cache key,
    so changing one builds a new model; an unchanged config loads the cached one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where built base models are cached (one folder per content hash).",
    )
    seed: int = Field(default=0, description="Seed of the corpus, the initial weights and the data order.")
    vocab_size: int = Field(default=2048, ge=300, description="Target size of the byte-level BPE vocabulary.")
    hidden_size: int = Field(default=128, gt=0, description="Width of the Llama model.")
    num_layers: int = Field(default=2, gt=0, description="Transformer layers.")
    num_heads: int = Field(default=4, gt=0, description="Attention heads (must divide hidden_size).")
    intermediate_size: int = Field(default=384, gt=0, description="MLP width.")
    max_length: int = Field(
        default=192, gt=16, description="Longest training sequence in tokens; also the model's position budget / 2."
    )
    corpus_size: int = Field(default=2400, gt=0, description="Synthetic conversations used for pre-training.")
    follow_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of corpus replies that follow their character's instructions (held-out prompts, which the model never saw, come out near 0.55).",
    )
    violation_rate: float = Field(
        default=0.24, ge=0, le=1, description="Share of corpus replies that break the content policy."
    )
    epochs: int = Field(default=3, gt=0, description="Passes over the corpus.")
    batch_size: int = Field(default=16, gt=0, description="Sequences per optimiser step.")
    learning_rate: float = Field(
        default=4e-3, gt=0, description="Peak AdamW learning rate (linear warm-up, cosine decay)."
    )
