"""Settings shared by every trainer (torch-free, so the composition root can load them)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import ConfigError


class LoraAdapterConfig(BaseModel):
    """LoRA adapters (peft) instead of full fine-tuning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=False, description="Train LoRA adapters instead of every weight.")
    r: int = Field(default=8, gt=0, description="Adapter rank.")
    alpha: int = Field(default=16, gt=0, description="Adapter scaling (alpha / r).")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"), description="Module names that get adapters."
    )
    merge: bool = Field(
        default=False, description="Merge adapters into the weights before saving (publish a full checkpoint)."
    )


class TrainerConfig(BaseModel):
    """Settings common to every trainer; each trainer's config extends this."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: float = Field(default=5e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training data.")
    batch_size: int = Field(default=16, gt=0, description="Examples per device per optimiser step.")
    max_length: int = Field(default=256, gt=8, description="Longest tokenised example; longer ones are truncated.")
    seed: int = Field(default=0, description="Seed of data order, dropout and sampling.")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Share of steps with linear warm-up.")
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations (saves memory on big models, slower)."
    )
    lora: LoraAdapterConfig = Field(default_factory=LoraAdapterConfig)

    def with_overrides(self: S, overrides: dict[str, Any]) -> S:
        """A copy with a job's overrides applied (``lora.r`` style keys reach nested fields).
        Unknown or invalid keys raise ConfigError naming them."""
        data = self.model_dump()
        for key, value in overrides.items():
            target = data
            *parents, leaf = key.split(".")
            for p in parents:
                if not isinstance(target.get(p), dict):
                    raise ConfigError(f"unknown setting {key!r} for {type(self).__name__}")
                target = target[p]
            if leaf not in target:
                raise ConfigError(f"unknown setting {key!r} for {type(self).__name__}; known: {sorted(data)}")
            target[leaf] = value
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid override for {type(self).__name__}: {exc.errors(include_url=False)[0]['msg']}"
            ) from None


S = TypeVar("S", bound=TrainerConfig)
