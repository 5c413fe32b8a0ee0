"""The one place where exceptions become HTTP responses: by exception type, in the
OpenAI error format ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from schemas import ConfigError, FlywheelError, SchemaError, ServingError
from serving import _metrics as m
from serving._errors import (
    AdminAuthError,
    ApiKeyError,
    AuthenticationError,
    CandidateUnavailableError,
    ContextLengthExceededError,
    DeadlineExceededError,
    DeploymentStateError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    OverloadedError,
    RequestTooLargeError,
)

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
_STATUS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (ContextLengthExceededError, 400, "invalid_request_error", "context_length_exceeded"),
    (InvalidRequestError, 400, "invalid_request_error", "invalid_request"),
    (SchemaError, 400, "invalid_request_error", "invalid_request"),
    (ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    (ApiKeyError, 401, "invalid_request_error", "invalid_api_key"),
    (AdminAuthError, 401, "authentication_error", "invalid_token"),
    (DeploymentStateError, 409, "invalid_request_error", "conflict"),
    (RequestTooLargeError, 413, "invalid_request_error", "request_too_large"),
    (OverloadedError, 429, "rate_limit_error", "overloaded"),
    (DeadlineExceededError, 504, "server_error", "deadline_exceeded"),
    (CandidateUnavailableError, 503, "server_error", "candidate_unavailable"),
    (EngineUnavailableError, 503, "server_error", "engine_unavailable"),
    (ModelLoadError, 500, "server_error", "model_load_failed"),
    (ConfigError, 500, "server_error", "misconfigured"),
    (ServingError, 502, "server_error", "engine_error"),
    (FlywheelError, 500, "server_error", "internal_error"),
)


def classify(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, OpenAI error type, code) of ``exc``."""
    if isinstance(exc, AdminAuthError) and exc.disabled:
        return 404, "invalid_request_error", "admin_disabled"
    for cls, status, type_, code in _STATUS:
        if isinstance(exc, cls):
            return status, type_, code
    return 500, "server_error", "internal_error"


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    status, type_, code = classify(exc)
    param = getattr(exc, "param", None) or (getattr(exc, "field", None) or None)
    message = str(exc) if status < 500 or isinstance(exc, FlywheelError) else "internal error"
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: Exception) -> JSONResponse:
    status, body = error_body(exc)
    m.HTTP_ERRORS.labels(str(status), body["error"]["code"]).inc()
    headers = {}
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    if isinstance(exc, AuthenticationError) and not getattr(exc, "disabled", False):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_flywheel(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        err = InvalidRequestError(
            f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}", param=".".join(loc) or None
        )
        return error_response(err)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in gateway")
        return error_response(exc)

    app.add_exception_handler(FlywheelError, on_flywheel)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)
