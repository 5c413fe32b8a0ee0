"""The engine plug-in point: what the gateway and the hot-swap controller need from a
model server, whether in-process (embedded) or remote (vLLM)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from schemas import CheckpointManifest
from serving._errors import ContextLengthExceededError


@dataclass(frozen=True)
class SamplingParams:
    """Sampling of one request (OpenAI names). ``temperature`` 0 means greedy."""

    max_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    messages: tuple[dict[str, str], ...]
    params: SamplingParams = field(default_factory=SamplingParams)


FinishReason = Literal["stop", "length"]
Messages = Sequence[dict[str, str]]


def prompt_chars(messages: Messages) -> int:
    """Characters of the messages' contents: what the context pre-check measures."""
    return sum(len(m.get("content") or "") for m in messages)


@dataclass(frozen=True)
class ContextWindow:
    """How much a version can read and write in one request.

    Attributes:
        tokens: most tokens of prompt and reply together (max positions, vLLM's max_model_len).
        max_token_chars: characters of the vocabulary's longest token, or None when unknown.
            A prompt of more than ``tokens × max_token_chars`` characters cannot fit, so
            it is refused without being tokenised.
    """

    tokens: int
    max_token_chars: int | None = None

    def check(self, chars: int, prompt_tokens: int | None = None) -> int | None:
        """Raise ContextLengthExceededError when a prompt of ``chars`` characters (and
        ``prompt_tokens`` tokens, when counted) leaves no room for a reply; else return
        how many tokens the reply may have (None when the prompt was not counted)."""
        if prompt_tokens is None:
            if self.max_token_chars and chars > self.tokens * self.max_token_chars:
                least = -(-chars // self.max_token_chars)  # ceiling: every token covers at most that many
                raise ContextLengthExceededError(context_tokens=self.tokens, prompt_tokens=least, counted=False)
            return None
        if prompt_tokens >= self.tokens:
            raise ContextLengthExceededError(context_tokens=self.tokens, prompt_tokens=prompt_tokens, counted=True)
        return self.tokens - prompt_tokens


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed reply. The last delta has ``finish_reason`` and the token counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint to load: its version, its files, and the manifest that vouches for them."""

    version: str
    path: Path | None
    kind: Literal["full", "lora"] = "full"
    parent: str | None = None
    manifest: CheckpointManifest | None = None

    @classmethod
    def from_manifest(cls, manifest: CheckpointManifest) -> ModelSource:
        uri = manifest.uri or ""
        path = Path(uri.removeprefix("file://")) if uri else None
        return cls(manifest.version, path, manifest.kind, manifest.parent, manifest)


@runtime_checkable
class Engine(Protocol):
    """A model server holding one or more versions at once (baseline and candidate)."""

    async def load(self, source: ModelSource) -> None:
        """Make ``source.version`` servable. Raises ModelLoadError; loading a loaded version is a no-op."""

    async def unload(self, version: str) -> None:
        """Free ``version``. Callers make sure nothing is in flight on it."""

    def versions(self) -> list[str]:
        """Versions currently loaded."""

    def context_window(self, version: str) -> ContextWindow | None:
        """The context of ``version``; None when it is unknown (or the version is not loaded)."""

    def count_prompt_tokens(self, version: str, messages: Messages) -> int | None:
        """Tokens of the prompt as the engine will feed it (chat template applied), or None
        when the engine cannot count them here. Thread-safe: the gateway calls it off the
        event loop for long prompts."""

    def generate(self, version: str, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream the reply. Cancelling the iteration (closing it) cancels the work upstream.

        Raises EngineUnavailableError before the first delta when the engine cannot serve it.
        """

    async def reconcile(self) -> list[tuple[str, str]]:
        """Bring every replica back to the versions loaded here (a restarted vLLM lost its
        runtime adapters); returns the (replica, version) pairs re-loaded. In-process
        engines have nothing to do."""

    async def close(self) -> None: ...


async def complete(engine: Engine, version: str, request: GenerationRequest) -> Delta:
    """Run a request to the end and return one delta with the whole text."""
    parts: list[str] = []
    last = Delta("")
    stream = engine.generate(version, request)
    try:
        async for delta in stream:
            parts.append(delta.text)
            last = delta
    finally:
        await stream.aclose()
    return Delta("".join(parts), last.finish_reason, last.prompt_tokens, last.completion_tokens)
