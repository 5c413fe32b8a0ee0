"""Who is asking: the caller of a chat completion, from the request body, its metadata
and the X-Flywheel-* headers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas import Instruction
from serving._errors import InvalidRequestError
from serving.gateway.protocol import ChatCompletionRequest

_instructions_adapter: TypeAdapter[list[Instruction]] = TypeAdapter(list[Instruction])

USER_HEADER = "x-flywheel-user"
CHARACTER_HEADER = "x-flywheel-character"
CONVERSATION_HEADER = "x-flywheel-conversation"
INSTRUCTIONS_HEADER = "x-flywheel-instructions"
EVENT_TIME_HEADER = "x-flywheel-event-time"
REGENERATE_HEADER = "x-flywheel-regenerate"


@dataclass(frozen=True)
class Caller:
    """Who is talking, from the request body, its metadata and the X-Flywheel-* headers."""

    user_id: str | None
    character_id: str
    conversation_id: str
    turn: int
    instructions: tuple[Instruction, ...]
    last_user_text: str
    event_time: datetime | None = None
    regenerated: bool = False

    def ts(self, elapsed_s: float = 0.0) -> datetime:
        """Event time: the client's clock when it sent X-Flywheel-Event-Time, else ours."""
        if self.event_time is None:
            return datetime.now(UTC)
        return self.event_time + timedelta(seconds=elapsed_s)


def caller_from(body: ChatCompletionRequest, headers: Mapping[str, str]) -> Caller:
    meta = body.metadata or {}
    user = body.user or headers.get(USER_HEADER) or _str(meta.get("user_id"))
    character = headers.get(CHARACTER_HEADER) or _str(meta.get("character_id")) or "default"
    user_msgs = [msg.text() for msg in body.messages if msg.role == "user"]
    conversation = headers.get(CONVERSATION_HEADER) or _str(meta.get("conversation_id"))
    if not conversation:
        # Stable across turns without server state: the same user and opening message.
        seed = f"{user or ''}\x00{character}\x00{user_msgs[0] if user_msgs else ''}"
        conversation = "conv-" + hashlib.sha1(seed.encode()).hexdigest()[:16]
    raw = headers.get(INSTRUCTIONS_HEADER) or meta.get("instructions")
    instructions: tuple[Instruction, ...] = ()
    if raw:
        try:
            parsed = (
                _instructions_adapter.validate_json(raw)
                if isinstance(raw, str)
                else _instructions_adapter.validate_python(raw)
            )
        except ValidationError as exc:
            raise InvalidRequestError(
                f"instructions: {exc.errors(include_url=False)[0]['msg']}", param="metadata.instructions"
            ) from None
        instructions = tuple(parsed)
    event_time = None
    raw_ts = headers.get(EVENT_TIME_HEADER) or _str(meta.get("event_time"))
    if raw_ts:
        try:
            event_time = datetime.fromisoformat(raw_ts.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(f"event time {raw_ts!r} is not ISO 8601", param=EVENT_TIME_HEADER) from None
        if event_time.tzinfo is None:
            raise InvalidRequestError("event time needs an explicit UTC offset", param=EVENT_TIME_HEADER)
        event_time = event_time.astimezone(UTC)
    regenerated = (headers.get(REGENERATE_HEADER) or str(meta.get("regenerate", ""))).lower() in {"1", "true", "yes"}
    return Caller(
        user,
        character,
        conversation,
        max(1, len(user_msgs)),
        instructions,
        user_msgs[-1] if user_msgs else "",
        event_time,
        regenerated,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
