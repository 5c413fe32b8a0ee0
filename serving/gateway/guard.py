"""The gateway's front door, an ASGI middleware that answers before a body is parsed:

1. API keys on ``/v1`` (when configured): ``Authorization: Bearer <key>``, else 401 —
   checked first, so a caller without a key cannot make the gateway read its body;
2. the body-size limit: a ``Content-Length`` over ``max_body_bytes`` gets 413 without
   reading anything, and a body sent without one (chunked) is read only up to the limit.

Refusals are the typed errors of ``serving._errors``, answered through the one mapping
(``serving.gateway.errors.error_response``). A body within the limit is handed on whole.
"""

from __future__ import annotations

from collections import deque

from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import ServingError
from serving._auth import bearer_matches
from serving._errors import ApiKeyError, RequestTooLargeError
from serving.gateway.errors import error_response

_API_PREFIX = "/v1"


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, api_keys: tuple[SecretStr, ...] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            authorization, declared = _headers(scope)
            path: str = scope["path"]
            guarded = self.api_keys and (path == _API_PREFIX or path.startswith(_API_PREFIX + "/"))
            if guarded and not bearer_matches(authorization, self.api_keys):
                raise ApiKeyError("missing or invalid API key: send 'Authorization: Bearer <key>'")
            receive = await self._bounded(declared, receive)
        except ServingError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _too_large(self, size: str) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"the request body ({size}) is larger than the limit of {self.max_body_bytes} bytes",
            limit_bytes=self.max_body_bytes,
        )

    async def _bounded(self, declared: str | None, receive: Receive) -> Receive:
        """Read the body up to the limit and return a ``receive`` that replays it."""
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(f"{int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return _replay(deque([message]), receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(f"over {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return _replay(deque([{"type": "http.request", "body": body, "more_body": False}]), receive)


def _replay(pending: deque[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replayed


def _headers(scope: Scope) -> tuple[str | None, str | None]:
    """The Authorization and Content-Length headers (ASGI names them in lower case)."""
    authorization = length = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            length = value.decode("latin-1")
    return authorization, length
