"""The logic of one chat completion: which arm and version serve the caller, whether the
prompt fits, admission to the engine, talking to it under the request's deadline
(retrying only before the first byte), relaying the stream, metrics, and logging the
turn as chat events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from schemas import DeploymentState, FlywheelError
from serving import _metrics as m
from serving._errors import (
    CandidateUnavailableError,
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
)
from serving.engines.base import Delta, GenerationRequest, SamplingParams
from serving.gateway._route_metrics import route_metrics
from serving.gateway.admission import Admission
from serving.gateway.caller import Caller, caller_from
from serving.gateway.deadline import Deadline
from serving.gateway.errors import error_body
from serving.gateway.events import EventLogger
from serving.gateway.gateway_config import GatewayConfig
from serving.gateway.prompt_fit import fit_prompt
from serving.gateway.protocol import ChatCompletionRequest, chunk_body, completion_body, usage_chunk
from serving.gateway.turn_events import event_id, log_reply, log_user_turn
from serving.hotswap.slots import ModelSlots
from serving.routing import ConversationPins, Route, RoutingStore, route

log = logging.getLogger(__name__)

# The engine's answer stands: retrying a request it refused, or one out of time, cannot help.
_NOT_RETRIED = (InvalidRequestError, DeadlineExceededError)


def _count_failure(r: Route, exc: Exception) -> None:
    m.ERRORS.labels(r.model, r.arm, r.version, type(exc).__name__).inc()
    m.REQUESTS.labels(r.model, r.arm, r.version, "error").inc()


Outcome = Literal["ok", "error", "cancelled"]


@dataclass
class _Open:
    route: Route
    first: Delta
    stream: AsyncGenerator[Delta, None]
    resources: AsyncExitStack
    """Closes the engine's stream, then releases the version's lease."""
    started: float
    ttft_s: float
    done: bool = False


@dataclass(slots=True)
class _Relay:
    """What a streaming relay has sent so far, for the bookkeeping at its release."""

    last: Delta
    outcome: Outcome = "cancelled"
    parts: list[str] = field(default_factory=list)


class ChatHandler:
    def __init__(
        self, config: GatewayConfig, store: RoutingStore, slots: ModelSlots, events: EventLogger | None
    ) -> None:
        self.config = config
        self.store = store
        self.slots = slots
        self.events = events
        # One engine behind this gateway: one bounded queue in front of it.
        self.admission = Admission(config.max_running, config.max_queued, config.retry_after_s)
        self.pins = ConversationPins(config.max_pinned_conversations)

    # -- routing ----------------------------------------------------------------------
    def resolve(self, model: str, user_id: str | None, conversation_id: str | None = None, turn: int = 1) -> Route:
        public = model.split("@", 1)[0]
        if public not in self.config.models:
            raise ModelNotFoundError(
                f"the model {model!r} does not exist; this gateway serves {list(self.config.models)}"
            )
        state = self.store.get(public)
        if state is None:
            raise ModelNotFoundError(f"model {public!r} has no version deployed yet")
        pinned = self.pins.route(state, conversation_id, turn, self.slots.is_ready)
        if pinned is not None:
            return pinned
        chosen = self._route(public, state, user_id)
        self.pins.pin(conversation_id, chosen.version)
        return chosen

    def _route(self, public: str, state: DeploymentState, user_id: str | None) -> Route:
        chosen = route(state, user_id)
        if chosen.arm == "candidate" and not self.slots.is_ready(chosen.version):
            # Fail over, never fall back: the baseline's reply would be logged in the baseline
            # arm for a user the experiment put in the candidate arm (a sample-ratio mismatch,
            # and a diluted comparison). This replica is not ready meanwhile (/ready is 503),
            # so the load balancer sends the retry to a replica that has the candidate.
            m.ROUTING_FALLBACKS.labels(public).inc()
            raise CandidateUnavailableError(
                f"candidate {chosen.version} of {public!r} is not loaded on this replica yet; retry",
                retry_after_s=1.0,
            )
        return chosen

    def sampling(self, body: ChatCompletionRequest) -> SamplingParams:
        max_tokens = body.max_completion_tokens or body.max_tokens or self.config.default_max_tokens
        if max_tokens > self.config.max_tokens_limit:
            raise InvalidRequestError(
                f"max_tokens ({max_tokens}) exceeds the limit {self.config.max_tokens_limit}", param="max_tokens"
            )
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        return SamplingParams(
            max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop
        )

    # -- engine calls -----------------------------------------------------------------
    async def _fit(
        self, body: ChatCompletionRequest, caller: Caller, request: GenerationRequest
    ) -> tuple[Route, GenerationRequest]:
        """Route the caller and fit the prompt to that version's context, before the
        request takes a queue slot (ContextLengthExceededError when it cannot fit)."""
        chosen = self.resolve(body.model, caller.user_id, caller.conversation_id, caller.turn)
        return chosen, await fit_prompt(self.slots.engine, chosen.version, request)

    async def _open(
        self,
        body: ChatCompletionRequest,
        caller: Caller,
        request: GenerationRequest,
        fitted: Route,
        deadline: Deadline,
    ) -> _Open:
        """Route, lease the version, and get the first delta; retry only up to here."""
        last: Exception | None = None
        started = time.perf_counter()
        for attempt in range(self.config.engine_attempts):
            chosen = self.resolve(body.model, caller.user_id, caller.conversation_id, caller.turn)
            if chosen.version != fitted.version:  # a retry landed elsewhere: fit it there
                request, fitted = await fit_prompt(self.slots.engine, chosen.version, request), chosen
            try:
                return await self._attempt(chosen, request, deadline, started)
            except _NOT_RETRIED as exc:
                if isinstance(exc, DeadlineExceededError):  # the version was too slow: its error
                    _count_failure(chosen, exc)
                raise
            except FlywheelError as exc:  # the version not loaded here, or the engine failed
                last = exc
            if attempt + 1 < self.config.engine_attempts:
                m.RETRIES.labels(chosen.model, chosen.arm, chosen.version).inc()
                await deadline.wait(asyncio.sleep(self.config.retry_backoff_s * 2**attempt))
        assert last is not None
        _count_failure(chosen, last)
        raise last

    async def _attempt(self, chosen: Route, request: GenerationRequest, deadline: Deadline, started: float) -> _Open:
        """Lease the version and start generating; on any failure the stream is closed and
        the lease released before the exception leaves."""
        async with AsyncExitStack() as stack:
            stack.enter_context(self.slots.lease(chosen.version))
            stream = self.slots.engine.generate(chosen.version, request)
            stack.push_async_callback(stream.aclose)
            try:
                first = await deadline.wait(stream.__anext__())
            except StopAsyncIteration:  # nothing generated: release now, relay an empty reply
                return _Open(
                    chosen, Delta("", "stop"), _empty(), AsyncExitStack(), started, time.perf_counter() - started
                )
            return _Open(chosen, first, stream, stack.pop_all(), started, time.perf_counter() - started)

    async def complete(self, body: ChatCompletionRequest, headers: Mapping[str, str]) -> tuple[dict[str, Any], Route]:
        """A non-streaming completion."""
        caller, request = self._prepare(body, headers)
        deadline = Deadline(self.config.request_timeout_s)
        try:
            fitted, request = await self._fit(body, caller, request)
            await deadline.wait(self.admission.acquire())
            try:
                opened = await self._open(body, caller, request, fitted, deadline)
                self._log_request(caller, opened.route)
                parts = [opened.first.text]
                last = opened.first
                outcome: Outcome = "error"
                gauge = route_metrics(opened.route).in_flight
                gauge.inc()
                try:
                    while last.finish_reason is None:
                        try:
                            last = await deadline.wait(opened.stream.__anext__())
                        except StopAsyncIteration:
                            break
                        parts.append(last.text)
                    outcome = "ok"
                except FlywheelError as exc:
                    r = opened.route
                    m.ERRORS.labels(r.model, r.arm, r.version, type(exc).__name__).inc()
                    raise
                except asyncio.CancelledError:
                    outcome = "cancelled"  # the client went away
                    raise
                finally:
                    gauge.dec()
                    await _close(opened)
                    self._finish(opened, caller, request, outcome, "".join(parts), last)
            finally:
                self.admission.release()
        finally:
            deadline.cancel()
        r = opened.route
        body_out = completion_body(
            request.request_id,
            int(time.time()),
            f"{r.model}@{r.version}",
            f"{r.arm}:{r.version}",
            "".join(parts),
            last.finish_reason or "stop",
            last.prompt_tokens,
            last.completion_tokens,
        )
        return body_out, r

    async def stream(self, body: ChatCompletionRequest, headers: Mapping[str, str]) -> OpenStream:
        """A streaming completion: the first delta is in hand before any byte is sent.

        The caller must call ``OpenStream.release()`` once the response is over (idempotent):
        it frees the engine lease and the queue slot even if the relay never started
        (client gone at once).
        """
        caller, request = self._prepare(body, headers)
        deadline = Deadline(self.config.request_timeout_s)
        try:
            fitted, request = await self._fit(body, caller, request)
            await deadline.wait(self.admission.acquire())
        except BaseException:
            deadline.cancel()
            raise
        try:
            opened = await self._open(body, caller, request, fitted, deadline)
        except BaseException:
            self.admission.release()
            deadline.cancel()
            raise
        self._log_request(caller, opened.route)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        sent = _Relay(opened.first)

        async def release() -> None:
            if opened.done:
                return
            opened.done = True
            with anyio.CancelScope(shield=True):
                await _close(opened)
            self.admission.release()
            deadline.cancel()
            self._finish(opened, caller, request, sent.outcome, "".join(sent.parts), sent.last)

        relay = self._relay(opened, request, include_usage, sent, release, deadline)
        return OpenStream(relay, opened.route, request.request_id, release)

    async def _relay(
        self,
        opened: _Open,
        request: GenerationRequest,
        include_usage: bool,
        sent: _Relay,
        release: Callable[[], Awaitable[None]],
        deadline: Deadline,
    ) -> AsyncIterator[bytes]:
        r = opened.route
        rid, created = request.request_id, int(time.time())
        name, fp = f"{r.model}@{r.version}", f"{r.arm}:{r.version}"
        parts = sent.parts
        gauge = route_metrics(r).in_flight
        gauge.inc()
        try:
            yield _sse(chunk_body(rid, created, name, fp, {"role": "assistant", "content": opened.first.text}))
            parts.append(opened.first.text)
            # Content chunks differ only in the text: encode the rest once per request.
            head, tail = _content_chunk_template(rid, created, name, fp)
            last = opened.first
            while last.finish_reason is None:
                try:
                    last = await deadline.wait(opened.stream.__anext__())
                except StopAsyncIteration:
                    break
                sent.last = last
                if last.text:
                    parts.append(last.text)
                    yield head + json.dumps(last.text).encode() + tail
            # The finish chunk, usage and [DONE] go out together: one write to the client, not three.
            end = _sse(chunk_body(rid, created, name, fp, {}, last.finish_reason or "stop"))
            if include_usage:
                end += _sse(usage_chunk(rid, created, name, fp, last.prompt_tokens, last.completion_tokens))
            yield end + b"data: [DONE]\n\n"
            sent.outcome = "ok"
        except FlywheelError as exc:
            # Bytes are out: no retry now. Report the failure in-band, as OpenAI does.
            sent.outcome = "error"
            m.ERRORS.labels(r.model, r.arm, r.version, type(exc).__name__).inc()
            yield _sse(error_body(exc)[1])
        finally:
            gauge.dec()
            await release()

    # -- bookkeeping ------------------------------------------------------------------
    def _prepare(self, body: ChatCompletionRequest, headers: Mapping[str, str]) -> tuple[Caller, GenerationRequest]:
        extra = sorted((body.model_extra or {}).keys())
        if extra:
            log.debug("ignoring unknown request fields %s", extra)
        caller = caller_from(body, headers)
        messages = tuple(
            {"role": "system" if msg.role == "developer" else msg.role, "content": msg.text()} for msg in body.messages
        )
        request = GenerationRequest(f"chatcmpl-{event_id().hex}", messages, self.sampling(body))
        return caller, request

    def _log_request(self, caller: Caller, r: Route) -> None:
        log_user_turn(self.events, self.config.surface, caller, r)

    def _finish(
        self, opened: _Open, caller: Caller, request: GenerationRequest, outcome: Outcome, text: str, last: Delta
    ) -> None:
        r = opened.route
        elapsed = time.perf_counter() - opened.started
        rm = route_metrics(r)
        getattr(rm, outcome).inc()
        rm.ttft.observe(opened.ttft_s)
        if outcome != "ok":
            return
        rm.e2e.observe(elapsed)
        rm.prompt_tokens.inc(last.prompt_tokens)
        rm.completion_tokens.inc(last.completion_tokens)
        log_reply(self.events, self.config.surface, caller, r, request.request_id, text, last, elapsed)


@dataclass(frozen=True)
class OpenStream:
    """An opened streaming completion: SSE bytes to relay, where it is served, and its release."""

    body: AsyncIterator[bytes]
    route: Route
    request_id: str
    release: Callable[[], Awaitable[None]]


async def _empty() -> AsyncGenerator[Delta, None]:
    return
    yield  # pragma: no cover


async def _close(opened: _Open) -> None:
    await opened.resources.aclose()


def _content_chunk_template(rid: str, created: int, name: str, fp: str) -> tuple[bytes, bytes]:
    marker = "\x00CONTENT\x00"
    doc = json.dumps(chunk_body(rid, created, name, fp, {"content": marker}), separators=(",", ":"))
    head, tail = doc.split(json.dumps(marker), 1)
    return b"data: " + head.encode(), tail.encode() + b"\n\n"


def _sse(doc: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"
