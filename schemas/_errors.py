"""The project's one exception tree. Exceptions carry data, not just text."""

from __future__ import annotations


class FlywheelError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(FlywheelError):
    """A setting is missing or inconsistent; the message names the value and the fix."""


class SchemaError(FlywheelError):
    """A message failed validation.

    Attributes:
        field: dotted path of the offending field ("" when the document as a whole is bad).
        reason: why it was refused, in words a producer can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field or '<document>'}: {reason}")


class StreamError(FlywheelError):
    """The bus failed: delivery, commit, transaction, topic administration."""

    def __init__(self, message: str, *, topic: str | None = None, retriable: bool = False) -> None:
        self.topic = topic
        self.retriable = retriable
        super().__init__(message)


class TrainerError(FlywheelError):
    """A training job, the offline gate or the checkpoint registry failed."""


class ServingError(FlywheelError):
    """An engine, the gateway or the deployment controller failed."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)
