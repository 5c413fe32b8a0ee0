"""Settings of the vLLM engine (a client of vLLM's OpenAI-compatible servers)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class VllmEngineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: tuple[str, ...] = Field(
        default=("http://127.0.0.1:8000",), description="Base URLs of the vLLM replicas (without /v1)."
    )
    model: str = Field(default="policy", description="Public model name; versions are served as '<model>@<version>'.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="Longest a single completion may take.")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="TCP connect timeout to a replica.")
    load_timeout_s: float = Field(
        default=600.0, gt=0, description="How long a full checkpoint's replica may take to appear and become healthy."
    )
    poll_interval_s: float = Field(default=2.0, gt=0, description="Poll interval while waiting for a replica.")
    warmup_max_tokens: int = Field(
        default=8, gt=0, description="max_tokens of the warm-up completion sent after every load."
    )
    lora_path_prefix: str = Field(
        default="",
        description="Replace the local checkpoint root with this path as the vLLM servers see it ('' = same path).",
    )
    local_path_prefix: str = Field(default="", description="Local checkpoint root that lora_path_prefix replaces.")
    max_model_len: int = Field(
        default=0,
        ge=0,
        description="Context (prompt + completion tokens) of the served model; 0 = the smallest "
        "max_model_len the replicas report in /v1/models.",
    )
    tokenizer_dir: Path | None = Field(
        default=None,
        description="Tokenizer folder of the base the replicas were started with (versions loaded "
        "without a path); with it the gateway counts prompt tokens exactly. None = check by length.",
    )
    max_token_chars: int = Field(
        default=128,
        gt=0,
        description="Used without a tokenizer: characters of the served vocabulary's longest token, max(len(t) for t in "
        "tokenizer.get_vocab()): prompts longer than max_model_len × this many characters are "
        "refused by the gateway without reaching vLLM.",
    )
