"""Settings of the hot-swap controller."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HotSwapConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    require_gate: bool = Field(
        default=True, description="Only checkpoints whose offline gate passed (eval.passed) get a canary."
    )
    health_prompts: tuple[str, ...] = Field(
        default=("Hello! How are you today?", "Tell me something about yourself."),
        description="Real completions a new version must answer before it gets traffic.",
    )
    health_max_tokens: int = Field(default=8, gt=0, description="max_tokens of each health-check completion.")
    health_timeout_s: float = Field(default=60.0, gt=0, description="Longest the whole health check may take.")
    unload_grace_s: float = Field(
        default=2.0,
        ge=0,
        description="Keep a version loaded this long after routing stopped naming it (gateways refresh routing state within this).",
    )
    reconcile_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the engine's replicas are checked for the versions loaded here "
        "(vLLM: adapters are re-applied to a replica that restarted or started late).",
    )
    prepare_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest the leader waits for every replica to load a new candidate before it opens "
        "the canary anyway (a replica still without it stays not ready until it has it).",
    )
    report_ttl_s: float = Field(
        default=15.0,
        gt=0,
        description="A replica's report of the versions it has ready lapses after this "
        "(a dead replica stops counting); renewed every poll.",
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often `flywheel serve` polls models.checkpoints."
    )
