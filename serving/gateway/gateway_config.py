"""Settings of the OpenAI-compatible gateway."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", description="Interface `flywheel serve` listens on.")
    port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the gateway (OpenAI API, admin API, /metrics)."
    )
    models: tuple[str, ...] = Field(default=("policy",), description="Public model names clients may ask for.")
    max_pinned_conversations: int = Field(
        default=100_000,
        gt=0,
        description="Conversations remembered so each stays on "
        "the version it started on (least recently used forgotten first).",
    )
    max_in_flight: int = Field(default=512, gt=0, description="Requests in flight before new ones get HTTP 429.")
    engine_attempts: int = Field(
        default=3, gt=0, description="Tries per request against the engine, only before the first byte."
    )
    retry_backoff_s: float = Field(default=0.05, ge=0, description="Pause between tries (doubles each time).")
    default_max_tokens: int = Field(default=128, gt=0, description="max_tokens when a request names none.")
    max_tokens_limit: int = Field(default=2048, gt=0, description="Largest max_tokens a request may ask for.")
    event_buffer_size: int = Field(
        default=10_000, gt=0, description="Chat events buffered for the bus before new ones are dropped (and counted)."
    )
    surface: str = Field(default="api", description="`surface` of the chat events the gateway logs.")
