"""Typed serving errors. The gateway maps them to HTTP by type, in one place
(``serving.gateway.errors``)."""

from __future__ import annotations

from schemas import ServingError


class InvalidRequestError(ServingError):
    """The client's request is malformed or asks for something impossible (HTTP 400)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class ModelNotFoundError(ServingError):
    """The requested public model name (or version) is not served here (HTTP 404)."""


class EngineUnavailableError(ServingError):
    """The engine could not take the request (not loaded, replica down); retriable (HTTP 503)."""


class OverloadedError(ServingError):
    """Too many requests in flight (HTTP 429)."""


class ModelLoadError(ServingError):
    """A checkpoint could not be loaded or failed its health check; it never gets traffic."""

    def __init__(self, message: str, *, version: str) -> None:
        self.version = version
        super().__init__(message)


class AdminAuthError(ServingError):
    """Missing or wrong bearer token on the admin API (HTTP 401), or admin disabled (HTTP 404)."""

    def __init__(self, message: str, *, disabled: bool = False) -> None:
        self.disabled = disabled
        super().__init__(message)


class DeploymentStateError(ServingError):
    """An operator action that does not fit the current deployment state (HTTP 409)."""
