"""The logic of one chat completion: who is asking, which arm and version serve them,
talking to the engine (retrying only before the first byte), relaying the stream,
metrics, and logging the turn as chat events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from pydantic import TypeAdapter, ValidationError

from schemas import (
    DeploymentState,
    FlywheelError,
    Instruction,
    ModelResponseEvent,
    SessionStartedEvent,
    UserMessageEvent,
)
from serving import _metrics as m
from serving._errors import EngineUnavailableError, InvalidRequestError, ModelNotFoundError, OverloadedError
from serving.engines.base import Delta, GenerationRequest, SamplingParams
from serving.gateway.errors import error_body
from serving.gateway.events import EventLogger
from serving.gateway.gateway_config import GatewayConfig
from serving.gateway.protocol import ChatCompletionRequest, chunk_body, completion_body, usage_chunk
from serving.hotswap.slots import ModelSlots
from serving.routing import Route, RoutingStore, route

log = logging.getLogger(__name__)
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


_ids = random.Random()  # seeded from os.urandom once; ids need uniqueness, not secrecy


def _event_id() -> uuid.UUID:
    """A random (version 4) UUID without a getrandom() system call per id."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class _RouteMetrics:
    """Metric children of one (model, arm, version), looked up once instead of per request."""

    ok: Any
    cancelled: Any
    error: Any
    ttft: Any
    e2e: Any
    prompt_tokens: Any
    completion_tokens: Any
    in_flight: Any

    @classmethod
    def of(cls, r: Route) -> _RouteMetrics:
        labels = (r.model, r.arm, r.version)
        return cls(
            m.REQUESTS.labels(*labels, "ok"),
            m.REQUESTS.labels(*labels, "cancelled"),
            m.REQUESTS.labels(*labels, "error"),
            m.TTFT.labels(*labels),
            m.E2E.labels(*labels),
            m.TOKENS.labels(*labels, "prompt"),
            m.TOKENS.labels(*labels, "completion"),
            m.IN_FLIGHT.labels(*labels),
        )


_route_metrics: dict[Route, _RouteMetrics] = {}


def route_metrics(r: Route) -> _RouteMetrics:
    found = _route_metrics.get(r)
    if found is None:
        if len(_route_metrics) > 1000:  # versions come and go; never grow without bound
            _route_metrics.clear()
        found = _route_metrics[r] = _RouteMetrics.of(r)
    return found


@dataclass
class _Open:
    route: Route
    first: Delta
    stream: AsyncGenerator[Delta, None]
    lease: Any
    started: float
    ttft_s: float
    done: bool = False


class ChatHandler:
    def __init__(
        self, config: GatewayConfig, store: RoutingStore, slots: ModelSlots, events: EventLogger | None
    ) -> None:
        self.config = config
        self.store = store
        self.slots = slots
        self.events = events
        self._in_flight = 0
        # conversation id -> version it started on. A conversation stays on its version
        # while that version is still deployed: when a canary opens or advances, talks
        # under way must not jump arms mid-conversation (their late turns would be
        # credited to the new arm and bias its per-response metrics).
        self._pins: OrderedDict[str, str] = OrderedDict()

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
        pinned = self._pins.get(conversation_id) if conversation_id and turn > 1 else None
        if pinned is not None and self.slots.is_ready(pinned):
            if pinned == state.baseline_version:
                return Route(public, "baseline", pinned)
            if pinned == state.candidate_version:
                return Route(public, "candidate", pinned)
        chosen = self._route(public, state, user_id)
        if conversation_id:
            self._pins[conversation_id] = chosen.version
            self._pins.move_to_end(conversation_id)
            if len(self._pins) > self.config.max_pinned_conversations:
                self._pins.popitem(last=False)
        return chosen

    def _route(self, public: str, state: DeploymentState, user_id: str | None) -> Route:
        chosen = route(state, user_id)
        if chosen.arm == "candidate" and not self.slots.is_ready(chosen.version) and state.baseline_version:
            m.ROUTING_FALLBACKS.labels(public).inc()
            return Route(public, "baseline", state.baseline_version)
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
    async def _open(self, body: ChatCompletionRequest, caller: Caller, request: GenerationRequest) -> _Open:
        """Route, lease the version, and get the first delta; retry only up to here."""
        last: Exception | None = None
        started = time.perf_counter()
        for attempt in range(self.config.engine_attempts):
            chosen = self.resolve(body.model, caller.user_id, caller.conversation_id, caller.turn)
            try:
                lease = self.slots.lease(chosen.version)
                lease.__enter__()
            except EngineUnavailableError as exc:
                last = exc
            else:
                stream = self.slots.engine.generate(chosen.version, request)
                try:
                    first = await stream.__anext__()
                    return _Open(chosen, first, stream, lease, started, time.perf_counter() - started)
                except StopAsyncIteration:
                    await stream.aclose()
                    lease.__exit__(None, None, None)
                    return _Open(
                        chosen, Delta("", "stop"), _empty(), _NullLease(), started, time.perf_counter() - started
                    )
                except FlywheelError as exc:
                    last = exc
                    await stream.aclose()
                    lease.__exit__(None, None, None)
                except BaseException:
                    await stream.aclose()
                    lease.__exit__(None, None, None)
                    raise
            if attempt + 1 < self.config.engine_attempts:
                m.RETRIES.labels(chosen.model, chosen.arm, chosen.version).inc()
                await asyncio.sleep(self.config.retry_backoff_s * 2**attempt)
        assert last is not None
        m.ERRORS.labels(chosen.model, chosen.arm, chosen.version, type(last).__name__).inc()
        m.REQUESTS.labels(chosen.model, chosen.arm, chosen.version, "error").inc()
        raise last

    def _admit(self) -> None:
        if self._in_flight >= self.config.max_in_flight:
            raise OverloadedError(f"{self._in_flight} requests in flight; try again shortly", retry_after_s=1.0)

    async def complete(self, body: ChatCompletionRequest, headers: Mapping[str, str]) -> tuple[dict[str, Any], Route]:
        """A non-streaming completion."""
        caller, request = self._prepare(body, headers)
        self._admit()
        self._in_flight += 1
        try:
            opened = await self._open(body, caller, request)
            self._log_request(caller, opened.route)
            parts = [opened.first.text]
            last = opened.first
            outcome = "error"
            gauge = route_metrics(opened.route).in_flight
            gauge.inc()
            try:
                if last.finish_reason is None:
                    async for delta in opened.stream:
                        parts.append(delta.text)
                        last = delta
                        if delta.finish_reason is not None:
                            break
                outcome = "ok"
            except FlywheelError as exc:
                m.ERRORS.labels(opened.route.model, opened.route.arm, opened.route.version, type(exc).__name__).inc()
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"  # the client went away
                raise
            finally:
                gauge.dec()
                await _close(opened)
                self._finish(opened, caller, request, outcome, "".join(parts), last)
        finally:
            self._in_flight -= 1
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
        it frees the engine lease even if the relay never started (client gone at once).
        """
        caller, request = self._prepare(body, headers)
        self._admit()
        self._in_flight += 1
        try:
            opened = await self._open(body, caller, request)
        except BaseException:
            self._in_flight -= 1
            raise
        self._log_request(caller, opened.route)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        state: dict[str, Any] = {"outcome": "cancelled", "text": [], "last": opened.first}

        async def release() -> None:
            if opened.done:
                return
            opened.done = True
            with anyio.CancelScope(shield=True):
                await _close(opened)
            self._in_flight -= 1
            self._finish(opened, caller, request, state["outcome"], "".join(state["text"]), state["last"])

        return OpenStream(
            self._relay(opened, request, include_usage, state, release), opened.route, request.request_id, release
        )

    async def _relay(
        self,
        opened: _Open,
        request: GenerationRequest,
        include_usage: bool,
        state: dict[str, Any],
        release: Callable[[], Awaitable[None]],
    ) -> AsyncIterator[bytes]:
        r = opened.route
        rid, created = request.request_id, int(time.time())
        name, fp = f"{r.model}@{r.version}", f"{r.arm}:{r.version}"
        parts: list[str] = state["text"]
        gauge = route_metrics(r).in_flight
        gauge.inc()
        try:
            yield _sse(chunk_body(rid, created, name, fp, {"role": "assistant", "content": opened.first.text}))
            parts.append(opened.first.text)
            # Content chunks differ only in the text: encode the rest once per request.
            head, tail = _content_chunk_template(rid, created, name, fp)
            if opened.first.finish_reason is None:
                async for delta in opened.stream:
                    state["last"] = delta
                    if delta.text:
                        parts.append(delta.text)
                        yield head + json.dumps(delta.text).encode() + tail
                    if delta.finish_reason is not None:
                        break
            last = state["last"]
            yield _sse(chunk_body(rid, created, name, fp, {}, last.finish_reason or "stop"))
            if include_usage:
                yield _sse(usage_chunk(rid, created, name, fp, last.prompt_tokens, last.completion_tokens))
            yield b"data: [DONE]\n\n"
            state["outcome"] = "ok"
        except FlywheelError as exc:
            # Bytes are out: no retry now. Report the failure in-band, as OpenAI does.
            state["outcome"] = "error"
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
        request = GenerationRequest(f"chatcmpl-{_event_id().hex}", messages, self.sampling(body))
        return caller, request

    def _log_request(self, caller: Caller, r: Route) -> None:
        try:
            self._log_request_events(caller, r)
        except ValidationError as exc:  # an event we cannot log must not fail the request
            m.EVENTS_FAILED.inc()
            log.warning("chat event not logged: %s", exc.errors(include_url=False)[0]["msg"])

    def _log_request_events(self, caller: Caller, r: Route) -> None:
        if self.events is None or caller.user_id is None:
            return  # without a user there is no experiment unit to attribute the turn to
        common: dict[str, Any] = dict(
            ts=caller.ts(),
            user_id=caller.user_id,
            conversation_id=caller.conversation_id,
            character_id=caller.character_id,
            surface=self.config.surface,
        )
        if caller.regenerated:
            return  # the user message of this turn was logged with the first reply
        if caller.turn == 1:
            self.events.log(SessionStartedEvent(event_id=_event_id(), arm=r.arm, model_version=r.version, **common))
        self.events.log(UserMessageEvent(event_id=_event_id(), turn=caller.turn, text=caller.last_user_text, **common))

    def _finish(
        self, opened: _Open, caller: Caller, request: GenerationRequest, outcome: str, text: str, last: Delta
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
        if self.events is None or caller.user_id is None:
            return
        try:
            event = ModelResponseEvent(
                event_id=_event_id(),
                ts=caller.ts(elapsed),
                user_id=caller.user_id,
                conversation_id=caller.conversation_id,
                character_id=caller.character_id,
                surface=self.config.surface,
                turn=caller.turn,
                text=text,
                model_version=r.version,
                arm=r.arm,
                request_id=request.request_id,
                latency_ms=elapsed * 1000.0,
                prompt_tokens=last.prompt_tokens,
                completion_tokens=last.completion_tokens,
                instructions=caller.instructions,
                regenerated=caller.regenerated,
            )
        except ValidationError as exc:
            m.EVENTS_FAILED.inc()
            log.warning("model_response not logged: %s", exc.errors(include_url=False)[0]["msg"])
            return
        self.events.log(event)


@dataclass(frozen=True)
class OpenStream:
    """An opened streaming completion: SSE bytes to relay, where it is served, and its release."""

    body: AsyncIterator[bytes]
    route: Route
    request_id: str
    release: Callable[[], Awaitable[None]]


class _NullLease:
    def __exit__(self, *exc: object) -> None:
        pass


async def _empty() -> AsyncGenerator[Delta, None]:
    return
    yield  # pragma: no cover


async def _close(opened: _Open) -> None:
    try:
        await opened.stream.aclose()
    finally:
        opened.lease.__exit__(None, None, None)


def _content_chunk_template(rid: str, created: int, name: str, fp: str) -> tuple[bytes, bytes]:
    marker = "\x00CONTENT\x00"
    doc = json.dumps(chunk_body(rid, created, name, fp, {"content": marker}), separators=(",", ":"))
    head, tail = doc.split(json.dumps(marker), 1)
    return b"data: " + head.encode(), tail.encode() + b"\n\n"


def _sse(doc: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"
