"""Settings of the vLLM engine (a client of vLLM's OpenAI-compatible servers)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VllmLauncherConfig(BaseModel):
    """Blue/green for full-weight generations: the engine starts a vLLM process of their own
    (``serving.engines.vllm_launcher``) through ``deploy/local/vllm.sh``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Start a vLLM process for each full-weight checkpoint that no configured replica serves. "
        "Off: such a checkpoint waits (load_timeout_s) for the deployment to start a replica serving it.",
    )
    script: Path | None = Field(
        default=None, description="The launch script; None = deploy/local/vllm.sh of this source tree."
    )
    venv: Path | None = Field(
        default=None, description="vLLM's venv; None = the script's cached one (~/.cache/flywheel/vllm-<flavour>-<v>)."
    )
    cpu_bind: str | None = Field(
        default=None,
        description="CPU build: cores a launched engine's threads are pinned to (VLLM_CPU_OMP_THREADS_BIND, "
        "e.g. '1' or '2-3'); None = vLLM's 'auto', which pins every server to the same first cores.",
    )
    first_port: int = Field(default=18100, gt=0, lt=65536, description="Lowest loopback port a launched process gets.")
    last_port: int = Field(default=18199, gt=0, lt=65536, description="Highest loopback port a launched process gets.")
    ready_timeout_s: float = Field(
        default=420.0,
        gt=0,
        description="Longest a launched process may take to be ready (vLLM on 2 CPU cores: 60-150 s).",
    )
    drain_timeout_s: float = Field(
        default=60.0, ge=0, description="On unload, wait this long for in-flight requests before stopping the process."
    )
    stop_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest the process may take to exit and free its port."
    )

    @model_validator(mode="after")
    def _ports_in_order(self) -> VllmLauncherConfig:
        if self.last_port < self.first_port:
            raise ValueError(f"last_port ({self.last_port}) is below first_port ({self.first_port}); raise last_port")
        return self


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
    unanswered_checks: int = Field(
        default=2,
        ge=1,
        description="Consecutive reconcile checks a replica may fail to answer (a timeout, a dropped "
        "connection: a busy server) before it leaves routing; a refused connection (nothing "
        "listening) takes it out at once.",
    )
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
    launcher: VllmLauncherConfig = Field(default_factory=VllmLauncherConfig)
