"""The embedded engine: transformers in-process (CPU or CUDA), for development and the demo.

A single background thread owns the model calls. It gathers queued requests of the same
version and sampling settings into one batch (up to ``max_batch_size``, waiting at most
``batch_wait_ms`` for company), runs ``generate`` once for the batch, and streams each
row's tokens back to its caller's event loop as they are produced. A cancelled request
stops its row; a batch whose rows are all finished or cancelled stops generating.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from schemas import ServingError
from serving._errors import EngineUnavailableError, ModelLoadError
from serving.engines._checkpoint import verify_checkpoint_dir
from serving.engines.base import Delta, FinishReason, GenerationRequest, ModelSource
from serving.engines.embedded_config import EmbeddedEngineConfig

log = logging.getLogger(__name__)
_DONE = object()


@dataclass
class _Job:
    version: str
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    ids: list[int] = field(default_factory=list)
    sent_chars: int = 0
    prompt_tokens: int = 0

    @property
    def key(self) -> tuple[str, float, float, int | None]:
        p = self.request.params
        return (self.version, p.temperature, p.top_p, p.seed)

    def emit(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


class EmbeddedEngine:
    """Serve several versions from local checkpoint folders with transformers."""

    def __init__(self, config: EmbeddedEngineConfig | None = None, load_lock: threading.Lock | None = None) -> None:
        """``load_lock``: held while a checkpoint loads. transformers' ``from_pretrained``
        patches process-wide state while it builds a model (default dtype, weight tying,
        meta-device creation), so two loads in one process must not overlap; share the lock
        with anything else in the process that loads models (the demo's trainer worker)."""
        self.config = config or EmbeddedEngineConfig()
        self._load_lock = load_lock or threading.Lock()
        self._models: dict[str, _Loaded] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._held: deque[_Job] = deque()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._device: str | None = None

    # -- lifecycle ------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedded-engine", daemon=True)
                self._thread.start()

    async def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(thread.join, 10.0)
            self._thread = None
        self._models.clear()

    def versions(self) -> list[str]:
        return sorted(self._models)

    async def load(self, source: ModelSource) -> None:
        if source.version in self._models:
            return
        loaded = await asyncio.to_thread(self._load_locked, source)
        self._models[source.version] = loaded
        self._ensure_thread()

    def _load_locked(self, source: ModelSource) -> _Loaded:
        with self._load_lock:
            return self._load_sync(source)

    def _load_sync(self, source: ModelSource) -> _Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if source.path is None:
            raise ModelLoadError(f"checkpoint {source.version}: no path to load from", version=source.version)
        verify_checkpoint_dir(source.path, source.version, source.manifest)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        dtype = self._dtype(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(source.path))
            if source.kind == "lora":
                model = self._load_lora(source)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(source.path), use_safetensors=True, dtype=dtype)
            model.to(device=device, dtype=dtype)
        except ServingError:
            raise
        except Exception as exc:  # any loader failure is a load failure of this checkpoint
            raise ModelLoadError(
                f"checkpoint {source.version}: load failed: {type(exc).__name__}: {exc}", version=source.version
            ) from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        if getattr(tokenizer, "chat_template", None) is None:
            raise ModelLoadError(f"checkpoint {source.version}: tokenizer has no chat template", version=source.version)
        model.eval()
        return _Loaded(model, tokenizer)

    def _dtype(self, device: str) -> Any:
        import torch

        if self.config.dtype == "auto":
            return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return getattr(torch, self.config.dtype)

    def _load_lora(self, source: ModelSource) -> Any:
        """A LoRA checkpoint is merged into its parent's weights (adapter_config names the base folder)."""
        try:
            from peft import AutoPeftModelForCausalLM
        except ImportError as exc:
            raise ModelLoadError(
                f"checkpoint {source.version}: LoRA needs peft installed", version=source.version
            ) from exc
        model = AutoPeftModelForCausalLM.from_pretrained(str(source.path), use_safetensors=True)
        return model.merge_and_unload()

    async def unload(self, version: str) -> None:
        self._models.pop(version, None)

    # -- requests -------------------------------------------------------------------
    async def generate(self, version: str, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        if version not in self._models:
            raise EngineUnavailableError(f"version {version!r} is not loaded", retry_after_s=1.0)
        self._ensure_thread()
        job = _Job(version, request, asyncio.get_running_loop(), asyncio.Queue())
        self._jobs.put(job)
        try:
            while True:
                item = await job.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancelled.set()  # client went away or we finished: the row stops either way

    # -- the batching loop (background thread) -----------------------------------------
    def _next_batch(self) -> list[_Job] | None:
        first: _Job | None = self._held.popleft() if self._held else self._jobs.get()
        if first is None:
            return None
        batch = [first]
        deadline = self.config.batch_wait_ms / 1000.0
        others: list[_Job] = []
        while self._held and len(batch) < self.config.max_batch_size:
            held = self._held.popleft()
            (batch if held.key == first.key else others).append(held)
        while len(batch) < self.config.max_batch_size:
            try:
                job = self._jobs.get(timeout=deadline) if deadline > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            (batch if job.key == first.key else others).append(job)
        self._held.extend(others)
        return [j for j in batch if not j.cancelled.is_set()]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._generate(batch)
            except Exception as exc:  # never let one bad batch kill the loop
                log.exception("embedded engine batch failed")
                err = EngineUnavailableError(f"generation failed: {type(exc).__name__}: {exc}")
                for job in batch:
                    if not job.finished:
                        job.finished = True
                        job.emit(err)

    def _generate(self, batch: list[_Job]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        loaded = self._models.get(batch[0].version)
        if loaded is None:
            err = EngineUnavailableError(f"version {batch[0].version!r} was unloaded", retry_after_s=1.0)
            for job in batch:
                job.finished = True
                job.emit(err)
            return
        tok, model = loaded.tokenizer, loaded.model
        prompts = [
            tok.apply_chat_template(list(j.request.messages), add_generation_prompt=True, tokenize=False) for j in batch
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        for i, job in enumerate(batch):
            job.prompt_tokens = int(enc["attention_mask"][i].sum())
        params = batch[0].request.params
        max_new = min(self.config.max_new_tokens, max(j.request.params.max_tokens for j in batch))
        streamer = _BatchStreamer(batch, tok)

        class _RowsDone(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.tensor([j.finished or j.cancelled.is_set() for j in batch], device=input_ids.device)

        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": tok.pad_token_id,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_RowsDone()]),
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            model.generate(**enc, **kwargs)
        streamer.end()


class _BatchStreamer:
    """Receives one token per row per step from ``generate`` and streams text deltas."""

    def __init__(self, jobs: list[_Job], tokenizer: Any) -> None:
        self.jobs = jobs
        self.tok = tokenizer
        self.eos = set(_as_list(tokenizer.eos_token_id))
        self.first = True

    def put(self, value: Any) -> None:
        if self.first:  # generate() hands over the prompt first
            self.first = False
            return
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
            if len(job.ids) >= job.request.params.max_tokens:
                self._finish(job, "length")

    def _send(self, job: _Job, text: str) -> None:
        if len(text) > job.sent_chars:
            job.emit(Delta(text[job.sent_chars :]))
            job.sent_chars = len(text)

    def _finish(self, job: _Job, reason: FinishReason) -> None:
        text = self.tok.decode(job.ids, skip_special_tokens=True)
        stop_at = _stop_index(text, job.request.params.stop)
        self._send(job, text if stop_at is None else text[:stop_at])
        job.finished = True
        job.emit(Delta("", reason, job.prompt_tokens, len(job.ids)))

    def end(self) -> None:
        for job in self.jobs:
            if not job.finished and not job.cancelled.is_set():
                self._finish(job, "length")


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]


def _stop_index(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
