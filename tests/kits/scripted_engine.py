"""A deterministic engine for tests and benchmarks (not for production traffic).

Each version answers with a fixed, version-stamped text, one word per delta, after an
optional per-token delay: tests can check that a reply is complete and came from the
version its arm was routed to, and the gateway benchmark can measure gateway overhead
against an engine whose own cost is known.

Its tokens are words: a prompt has one token per whitespace-separated word, and a word of
more than ``max_token_chars`` characters counts as one token per that many characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from serving._errors import EngineUnavailableError, ModelLoadError
from serving.engines.base import ContextWindow, Delta, GenerationRequest, Messages, ModelSource


def scripted_reply(version: str, words: int) -> str:
    """The full reply of ``version`` when ``words`` tokens are asked for."""
    return " ".join(f"{version}:w{i}" for i in range(words))


class ScriptedEngine:
    """Engine double with real async streaming and cancellation.

    Attributes:
        fail_load: versions whose load raises ModelLoadError.
        broken: versions that load but answer with an empty reply (fail the health check).
        fail_first: number of upcoming requests to refuse before the first delta (retry tests).
        started: request ids that reached the engine, in order.
        cancelled: request ids whose stream was closed before it finished.
        running: requests generating now.
    """

    def __init__(
        self,
        token_delay_s: float = 0.0,
        load_delay_s: float = 0.0,
        context_tokens: int | None = None,
        max_token_chars: int = 16,
    ) -> None:
        """``context_tokens``: the context of every version (None = unbounded, no check)."""
        self.token_delay_s = token_delay_s
        self.load_delay_s = load_delay_s
        self.context_tokens = context_tokens
        self.max_token_chars = max_token_chars
        self.started: list[str] = []
        self.running = 0
        self.fail_load: set[str] = set()
        self.broken: set[str] = set()
        self.fail_first = 0
        self.cancelled: list[str] = []
        self.completed: list[str] = []
        self.load_calls: list[str] = []
        self.unload_calls: list[str] = []
        self._versions: set[str] = set()

    async def load(self, source: ModelSource) -> None:
        self.load_calls.append(source.version)
        if self.load_delay_s:
            await asyncio.sleep(self.load_delay_s)  # the simulated load time itself, not a wait for a condition
        if source.version in self.fail_load:
            raise ModelLoadError(f"checkpoint {source.version}: scripted load failure", version=source.version)
        self._versions.add(source.version)

    async def unload(self, version: str) -> None:
        self.unload_calls.append(version)
        self._versions.discard(version)

    async def reconcile(self) -> list[tuple[str, str]]:
        return []

    def versions(self) -> list[str]:
        return sorted(self._versions)

    def context_window(self, version: str) -> ContextWindow | None:
        if self.context_tokens is None or version not in self._versions:
            return None
        return ContextWindow(self.context_tokens, self.max_token_chars)

    def count_prompt_tokens(self, version: str, messages: Messages) -> int | None:
        return sum(-(-len(w) // self.max_token_chars) for m in messages for w in (m.get("content") or "").split())

    async def generate(self, version: str, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        if version not in self._versions:
            raise EngineUnavailableError(f"version {version!r} is not loaded", retry_after_s=0.1)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise EngineUnavailableError("scripted transient failure", retry_after_s=0.0)
        n = 0 if version in self.broken else request.params.max_tokens
        prompt_tokens = self.count_prompt_tokens(version, request.messages) or 0
        finished = False
        self.started.append(request.request_id)
        self.running += 1
        try:
            for i in range(n):
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)  # simulated per-token generation time
                yield Delta(("" if i == 0 else " ") + f"{version}:w{i}")
            finished = True
            self.completed.append(request.request_id)
            yield Delta("", "stop" if n == 0 else "length", prompt_tokens, n)
        finally:
            self.running -= 1
            if not finished:
                self.cancelled.append(request.request_id)

    async def close(self) -> None:
        self._versions.clear()
