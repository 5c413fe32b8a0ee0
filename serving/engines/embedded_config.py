"""Settings of the embedded (in-process transformers) engine."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmbeddedEngineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights' dtype; auto = bfloat16 on a CUDA device that supports it, else float32."
    )
    max_batch_size: int = Field(default=16, gt=0, description="Most requests generated together in one batch.")
    batch_wait_ms: float = Field(
        default=2.0, ge=0, description="How long the batching loop waits for more requests to join a batch."
    )
    max_new_tokens: int = Field(default=256, gt=0, description="Upper bound on max_tokens of any request.")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 = leave torch's default.")
