"""Settings of the OpenAI-compatible gateway."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


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
    max_running: int = Field(
        default=64,
        gt=0,
        description="Requests the gateway lets generate on its engine at once; set it near what the "
        "engine runs together (embedded: a few times max_batch_size; vLLM: replicas × max_num_seqs).",
    )
    max_queued: int = Field(
        default=256,
        ge=0,
        description="Requests waiting (first come, first served) for one of max_running; past "
        "them a request gets HTTP 429 with Retry-After.",
    )
    retry_after_s: float = Field(default=1.0, gt=0, description="Retry-After of a 429 when the queue is full.")
    request_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Deadline of a completion, from its arrival (queue wait included) to its last token: "
        "at it the engine stops generating and the client gets HTTP 504 deadline_exceeded (or an "
        "error chunk when the stream had started).",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description="Largest request body accepted, in bytes; a larger one gets HTTP 413 before it is parsed.",
    )
    api_keys: tuple[SecretStr, ...] = Field(
        default=(),
        description="API keys of /v1 (JSON list); when set, every /v1 request needs "
        "'Authorization: Bearer <one of them>' (else HTTP 401). Empty = /v1 is open.",
    )
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

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        blank = [i for i, k in enumerate(keys) if not k.get_secret_value().strip()]
        if blank:
            raise ValueError(f"api_keys at positions {blank} are blank; remove them or give each a value")
        return keys
