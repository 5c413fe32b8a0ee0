"""Chat events: the producer contract of the `chat.events` topic."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter, ValidationError

from schemas._base import (
    DEFAULT_LIMITS,
    SCHEMA_VERSION,
    Message,
    SchemaVersion,
    Text,
    UtcDatetime,
    ValidationLimits,
    schema_error_from,
)
from schemas._instructions import Instruction

_Id = Annotated[str, Field(min_length=1, max_length=256)]


class ChatEventBase(Message):
    """Envelope shared by every chat event.

    ``event_id`` is the idempotence key: consumers drop a second event with the same id.
    """

    event_id: UUID = Field(description="Unique id of this event (UUID); the idempotence key.")
    schema_version: SchemaVersion = Field(
        default=SCHEMA_VERSION, description="Contract version; unknown versions are dead-lettered."
    )
    ts: UtcDatetime = Field(description="Event time, UTC, ISO 8601 with offset.")
    user_id: _Id = Field(description="Stable user id; the Kafka key of chat.events.")
    conversation_id: _Id
    character_id: _Id
    surface: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="chat", description="Where the chat happens: app, web, api…"
    )


class SessionStartedEvent(ChatEventBase):
    """A conversation began; carries the arm and model version the gateway assigned."""

    type: Literal["session_started"] = "session_started"
    arm: Literal["baseline", "candidate"]
    model_version: _Id


class UserMessageEvent(ChatEventBase):
    """The user said something (turn counts from 1)."""

    type: Literal["user_message"] = "user_message"
    turn: int = Field(ge=1)
    text: Text


class ModelResponseEvent(ChatEventBase):
    """The model replied to turn ``turn``; carries the instructions in force."""

    type: Literal["model_response"] = "model_response"
    turn: int = Field(ge=1)
    text: Text
    model_version: _Id
    arm: Literal["baseline", "candidate"]
    request_id: _Id
    latency_ms: float = Field(ge=0, le=3_600_000)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    instructions: tuple[Instruction, ...] = Field(
        default=(), description="The character's verifiable instructions for this reply."
    )
    regenerated: bool = Field(
        default=False, description="True when this reply replaces an earlier one for the same turn."
    )


class FeedbackKind(StrEnum):
    THUMBS_UP = "thumbs_up"
    THUMBS_DOWN = "thumbs_down"
    REGENERATE = "regenerate"
    REPORT = "report"
    COPY = "copy"


class UserFeedbackEvent(ChatEventBase):
    """Explicit feedback on the reply to ``turn``."""

    type: Literal["user_feedback"] = "user_feedback"
    turn: int = Field(ge=1)
    kind: FeedbackKind


class SessionEndedEvent(ChatEventBase):
    """The conversation ended."""

    type: Literal["session_ended"] = "session_ended"
    reason: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="user_left, idle_timeout, …")


ChatEvent = Annotated[
    SessionStartedEvent | UserMessageEvent | ModelResponseEvent | UserFeedbackEvent | SessionEndedEvent,
    Field(discriminator="type"),
]
"""Any chat event; the ``type`` field selects the kind."""

CHAT_EVENT_TYPES: tuple[type[ChatEventBase], ...] = (
    SessionStartedEvent,
    UserMessageEvent,
    ModelResponseEvent,
    UserFeedbackEvent,
    SessionEndedEvent,
)
_TAGS = frozenset(t.model_fields["type"].default for t in CHAT_EVENT_TYPES)
chat_event_adapter: TypeAdapter[ChatEvent] = TypeAdapter(ChatEvent)
# Stream processors validate every event: the compiled validator directly, without the
# adapter's Python-level argument handling.
_validate_chat_event_json = chat_event_adapter.validator.validate_json


def parse_chat_event(raw: bytes | str, limits: ValidationLimits = DEFAULT_LIMITS) -> ChatEvent:
    """Validate one JSON chat event.

    Raises:
        SchemaError: naming the first bad field and why.
    """
    try:
        return _validate_chat_event_json(raw, context=limits.as_context())
    except ValidationError as exc:
        raise schema_error_from(exc, strip_tags=_TAGS) from None
