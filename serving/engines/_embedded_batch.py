"""The rows of one embedded-engine batch: each request's job, how prompts become a
left-padded batch, and the streamer that hands every row's tokens back to its caller."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from serving.engines._tokens import longest_token_chars
from serving.engines.base import ContextWindow, Delta, FinishReason, GenerationRequest


@dataclass
class Job:
    version: str
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    ids: list[int] = field(default_factory=list)
    sent_chars: int = 0
    prompt_tokens: int = 0
    max_tokens: int = 0

    @property
    def key(self) -> tuple[float, float, int | None]:
        """Jobs of one key may share a batch, whatever their versions."""
        p = self.request.params
        return (p.temperature, p.top_p, p.seed)

    def emit(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class BatchStreamer:
    """Receives one token per row per step and streams text deltas. A row ends at any of
    ``eos_ids`` (a checkpoint's generation config may name several) or the tokenizer's."""

    def __init__(self, jobs: list[Job], tokenizer: Any, eos_ids: Any = None) -> None:
        self.jobs = jobs
        self.tok = tokenizer
        self.eos = set(_as_list(tokenizer.eos_token_id)) | set(_as_list(eos_ids))

    def put(self, value: Any) -> None:
        for job, token in zip(self.jobs, value.reshape(-1).tolist(), strict=False):
            if job.finished or job.cancelled.is_set():
                continue
            if token in self.eos:
                self._finish(job, "stop")
                continue
            job.ids.append(int(token))
            text = self.tok.decode(job.ids, skip_special_tokens=True)
            stop_at = _stop_index(text, job.request.params.stop)
            if stop_at is not None:
                self._send(job, text[:stop_at])
                self._finish(job, "stop")
                continue
            # Hold back from the first incomplete multi-byte character: a later token may complete it.
            pending = text.find("\ufffd", job.sent_chars)
            self._send(job, text if pending < 0 else text[:pending])
            if len(job.ids) >= job.max_tokens:
                self._finish(job, "length")

    def _send(self, job: Job, text: str) -> None:
        if len(text) > job.sent_chars:
            job.emit(Delta(text[job.sent_chars :]))
            job.sent_chars = len(text)

    def _finish(self, job: Job, reason: FinishReason) -> None:
        text = self.tok.decode(job.ids, skip_special_tokens=True)
        stop_at = _stop_index(text, job.request.params.stop)
        self._send(job, text if stop_at is None else text[:stop_at])
        job.finished = True
        job.emit(Delta("", reason, job.prompt_tokens, len(job.ids)))

    def end(self) -> None:
        for job in self.jobs:
            if not job.finished and not job.cancelled.is_set():
                self._finish(job, "length")


def left_padded(rows: list[list[int]], pad_id: int, device: Any) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` of a left-padded batch (decoder-only generation)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def context_of(model: Any, tokenizer: Any) -> ContextWindow | None:
    """The model's context (max positions) and its vocabulary's longest token in characters."""
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not positions:
        return None
    return ContextWindow(int(positions), longest_token_chars(tokenizer))


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]


def _stop_index(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
