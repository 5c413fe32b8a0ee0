"""The engine plug-in point: what the gateway and the hot-swap controller need from a
model server, whether in-process (embedded) or remote (vLLM)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from schemas import CheckpointManifest


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

    def generate(self, version: str, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream the reply. Cancelling the iteration (closing it) cancels the work upstream.

        Raises EngineUnavailableError before the first delta when the engine cannot serve it.
        """

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
