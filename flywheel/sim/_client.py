"""How simulated users reach the model: the public OpenAI-compatible API of the gateway."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas import Instruction, instruction_adapter

# The gateway's request contract for things the OpenAI API has no field for.
CHARACTER_HEADER = "X-Flywheel-Character"
CONVERSATION_HEADER = "X-Flywheel-Conversation"
INSTRUCTIONS_HEADER = "X-Flywheel-Instructions"
EVENT_TIME_HEADER = "X-Flywheel-Event-Time"
REGENERATE_HEADER = "X-Flywheel-Regenerate"
ARM_HEADER = "X-Flywheel-Arm"
VERSION_HEADER = "X-Flywheel-Model-Version"


@dataclass(frozen=True)
class TurnRequest:
    """One chat completion a simulated user asks for."""

    user_id: str
    conversation_id: str
    character_id: str
    instructions: tuple[Instruction, ...]
    messages: tuple[dict[str, str], ...]
    turn: int
    ts: datetime
    regenerate: bool = False


@dataclass(frozen=True)
class TurnReply:
    text: str
    model_version: str | None = None
    arm: str | None = None
    latency_ms: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class ChatClient(Protocol):
    """Anything that turns a TurnRequest into a reply (the gateway, or a stand-in in tests)."""

    async def complete(self, request: TurnRequest) -> TurnReply: ...

    async def aclose(self) -> None: ...


def instructions_json(instructions: tuple[Instruction, ...]) -> str:
    return json.dumps([instruction_adapter.dump_python(i, mode="json") for i in instructions], separators=(",", ":"))


class GatewayClient:
    """Talks to a Flywheel gateway with the official ``openai`` client, as any app would:
    ``user`` = user id; character, conversation, instructions and the client's event time
    in headers."""

    def __init__(
        self,
        base_url: str,
        model: str = "policy",
        api_key: str = "sim",
        timeout_s: float = 60.0,
        max_tokens: int = 64,
        max_retries: int = 2,
    ) -> None:
        from openai import AsyncOpenAI  # the client library is only needed when talking HTTP

        self._client = AsyncOpenAI(
            base_url=base_url.rstrip("/") + "/v1", api_key=api_key, timeout=timeout_s, max_retries=max_retries
        )
        self._model = model
        self._max_tokens = max_tokens

    def headers(self, request: TurnRequest) -> dict[str, str]:
        headers = {
            CHARACTER_HEADER: request.character_id,
            CONVERSATION_HEADER: request.conversation_id,
            INSTRUCTIONS_HEADER: instructions_json(request.instructions),
            EVENT_TIME_HEADER: request.ts.isoformat(),
        }
        if request.regenerate:
            headers[REGENERATE_HEADER] = "true"
        return headers

    async def complete(self, request: TurnRequest) -> TurnReply:
        started = time.perf_counter()
        raw = await self._client.chat.completions.with_raw_response.create(
            model=self._model,
            messages=list(request.messages),  # type: ignore[arg-type]  # openai wants a TypedDict per role; these are plain role/content dicts
            user=request.user_id,
            max_tokens=self._max_tokens,
            extra_headers=self.headers(request),
            metadata={"regenerate": "true"} if request.regenerate else None,
        )
        completion = raw.parse()
        text = completion.choices[0].message.content or "" if completion.choices else ""
        return TurnReply(
            text=text,
            model_version=raw.headers.get(VERSION_HEADER) or completion.model,
            arm=raw.headers.get(ARM_HEADER),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def aclose(self) -> None:
        await self._client.close()
