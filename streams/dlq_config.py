"""Settings of the dead letters every writer (the SDK, `flywheel produce`, the runners) sends."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_DLQ_MAX_BYTES = 900_000
"""Below librdkafka's producer ``message.max.bytes`` (1,000,000) and the broker's (1,048,588),
with room for librdkafka's per-message framing."""

MIN_DLQ_MAX_BYTES = 16_384
"""The reason, source and key headers are capped to fit in well under this (about 7.5 KiB)."""


class DeadLetterConfig(BaseModel):
    """How dead letters are bounded. ``FLYWHEEL_STREAMS__DLQ__<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(
        default=DEFAULT_DLQ_MAX_BYTES,
        ge=MIN_DLQ_MAX_BYTES,
        description="Largest dead letter written, key + value + headers. A bad record larger than this goes "
        "to the DLQ truncated to fit, with its original size and sha256 in headers. Keep it below the "
        "producer's and the broker's message.max.bytes (1,000,000 and 1,048,588 by default).",
    )
