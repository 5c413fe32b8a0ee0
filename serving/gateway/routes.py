"""HTTP surface of the gateway: OpenAI-compatible endpoints plus health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from serving.gateway.protocol import ChatCompletionRequest, models_body

router = APIRouter()
_DISCONNECT_POLL_S = 0.1
T = TypeVar("T")


class _ReleasingStreamingResponse(StreamingResponse):
    """Relays SSE chunk by chunk (no buffering) and always releases the engine lease,
    even when the client is gone before the first chunk was sent."""

    def __init__(self, release: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()


def _route_headers(route: Any, request_id: str) -> dict[str, str]:
    return {"X-Flywheel-Model-Version": route.version, "X-Flywheel-Arm": route.arm, "X-Request-Id": request_id}


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """Run ``work`` while watching the connection: when the client goes away first, cancel
    it (and with it the queue wait or the engine work) and return None."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            try:
                return await task  # it finished in that instant: the response notices the client left
            except asyncio.CancelledError:
                return None


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    headers = {k.lower(): v for k, v in request.headers.items()}
    # Nothing is sent before the first delta (streaming) or the end (not streaming), so
    # the connection is watched meanwhile; a streaming response watches it itself.
    if body.stream:
        opened = await _unless_client_leaves(request, gateway.handler.stream(body, headers))
        if opened is None:
            return Response(status_code=499)
        return _ReleasingStreamingResponse(
            opened.release,
            opened.body,
            media_type="text/event-stream",
            headers={
                **_route_headers(opened.route, opened.request_id),
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
    done = await _unless_client_leaves(request, gateway.handler.complete(body, headers))
    if done is None:
        return Response(status_code=499)
    doc, route = done
    return JSONResponse(doc, headers=_route_headers(route, doc["id"]))


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    gateway = request.app.state.gateway
    return models_body([name for name in gateway.config.models if gateway.store.get(name) is not None])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness: the process answers. Also reports the chat-event buffer (queued, sent,
    overflowed = dropped because the buffer was full, failed = refused by the bus)."""
    events = request.app.state.gateway.events
    body: dict[str, Any] = {"status": "ok"}
    if events is not None:
        s = events.stats()
        body["events"] = {"queued": s.queued, "sent": s.sent, "overflowed": s.overflowed, "failed": s.failed}
    return body


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: every public model has a baseline that is loaded here."""
    gateway = request.app.state.gateway
    missing = gateway.not_ready()
    if missing:
        return JSONResponse({"status": "not_ready", "missing": missing}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
