"""Training samples curated from traffic: `samples.reward`, `samples.sft`, `samples.preference`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas._base import SCHEMA_VERSION, Message, SchemaVersion, Text, UtcDatetime
from schemas._instructions import Instruction


class ChatMessage(Message):
    """One message of a conversation, in the OpenAI chat shape."""

    role: Literal["system", "user", "assistant"]
    content: Text


class _Sample(Message):
    schema_version: SchemaVersion = SCHEMA_VERSION
    sample_id: str = Field(description="Deterministic id (hash of source events) so replays overwrite.")
    conversation_id: str
    character_id: str
    context: tuple[ChatMessage, ...] = Field(min_length=1, description="PII-redacted conversation up to the reply.")
    instructions: tuple[Instruction, ...] = ()
    ts: UtcDatetime


class EngagementLabels(Message):
    continued: bool
    thumbs_up: bool = False
    thumbs_down: bool = False
    regenerated: bool = False
    instruction_following: bool
    violation: bool


class RewardSample(_Sample):
    """Pointwise sample: one reply and what the user did next."""

    kind: Literal["reward"] = "reward"
    response: Text
    labels: EngagementLabels
    model_version: str
    arm: Literal["baseline", "candidate"]


class SftSample(_Sample):
    """A curated reply worth imitating: engaged, instruction-following, clean."""

    kind: Literal["sft"] = "sft"
    response: Text
    model_version: str


class PreferenceSample(_Sample):
    """Two replies to the same context; the chosen one had the better outcome."""

    kind: Literal["preference"] = "preference"
    chosen: Text
    rejected: Text
    source: Literal["regenerate", "best_of_n", "arms", "synthetic"]
