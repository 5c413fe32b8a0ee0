"""Typed serving errors. The gateway maps them to HTTP by type, in one place
(``serving.gateway.errors``)."""

from __future__ import annotations

from schemas import ServingError


class InvalidRequestError(ServingError):
    """The client's request is malformed or asks for something impossible (HTTP 400)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class ContextLengthExceededError(InvalidRequestError):
    """The prompt leaves no room for a reply in the model's context (HTTP 400).

    Attributes:
        context_tokens: the model's context length.
        prompt_tokens: tokens of the prompt; a lower bound when ``counted`` is False
            (estimated from its length in characters, without tokenising it).
    """

    def __init__(self, *, context_tokens: int, prompt_tokens: int, counted: bool) -> None:
        self.context_tokens = context_tokens
        self.prompt_tokens = prompt_tokens
        self.counted = counted
        size = f"{prompt_tokens} tokens" if counted else f"at least {prompt_tokens} tokens"
        super().__init__(
            f"this model's maximum context length is {context_tokens} tokens; the messages have {size}. "
            "Shorten the messages.",
            param="messages",
        )


class RequestTooLargeError(ServingError):
    """The request body is larger than the gateway accepts (HTTP 413)."""

    def __init__(self, message: str, *, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(message)


class ModelNotFoundError(ServingError):
    """The requested public model name (or version) is not served here (HTTP 404)."""


class EngineUnavailableError(ServingError):
    """The engine could not take the request (not loaded, replica down); retriable (HTTP 503)."""


class OverloadedError(ServingError):
    """The engine's queue is full (HTTP 429, with ``retry_after_s`` as Retry-After)."""


class DeadlineExceededError(ServingError):
    """The request ran past its deadline; the engine stopped generating it (HTTP 504,
    or an error chunk when a stream had already started)."""

    def __init__(self, message: str, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(message)


class ModelLoadError(ServingError):
    """A checkpoint could not be loaded or failed its health check; it never gets traffic."""

    def __init__(self, message: str, *, version: str) -> None:
        self.version = version
        super().__init__(message)


class AuthenticationError(ServingError):
    """Missing or wrong bearer credentials (HTTP 401)."""


class ApiKeyError(AuthenticationError):
    """Missing or wrong API key on the OpenAI API when API keys are configured (HTTP 401)."""


class AdminAuthError(AuthenticationError):
    """Missing or wrong bearer token on the admin API (HTTP 401), or admin disabled (HTTP 404)."""

    def __init__(self, message: str, *, disabled: bool = False) -> None:
        self.disabled = disabled
        super().__init__(message)


class DeploymentStateError(ServingError):
    """An operator action that does not fit the current deployment state (HTTP 409)."""


class LeaseError(ServingError):
    """The leader lease could not be read, taken or renewed (Redis unreachable)."""


class NotLeaderError(DeploymentStateError):
    """A decision was asked of a replica that does not lead (HTTP 409); ``leader`` names who does."""

    def __init__(self, message: str, *, leader: str | None) -> None:
        self.leader = leader
        super().__init__(message)


class StaleLeaderError(DeploymentStateError):
    """The shared store refused a write: a newer leader's fencing token is already there (HTTP 409)."""

    def __init__(self, message: str, *, token: int, fence: int) -> None:
        self.token = token
        self.fence = fence
        super().__init__(message)


class CandidateUnavailableError(EngineUnavailableError):
    """This replica has not loaded the candidate the routing state names (HTTP 503 with
    Retry-After): a candidate-bucket user is never answered by the baseline instead, which
    would put their turns in the wrong arm."""
