"""Engagement signals: what the signals processor publishes to `engagement.signals`."""

from __future__ import annotations

from datetime import datetime
from types import GenericAlias
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints

from pydantic import Field, TypeAdapter, create_model

from schemas._base import SCHEMA_VERSION, Message, SchemaVersion, UtcDatetime
from schemas._window import EngagementRates, WindowCounters, default_of

Arm = Literal["baseline", "candidate"]


class ResponseOutcome(Message):
    """Per response: did the user continue, what feedback came, did it follow instructions."""

    kind: Literal["response_outcome"] = "response_outcome"
    schema_version: SchemaVersion = SCHEMA_VERSION
    user_id: str
    conversation_id: str
    character_id: str
    turn: int
    request_id: str
    model_version: str
    arm: Arm
    response_ts: UtcDatetime
    continued: bool = Field(description="User sent another message in the conversation within continue_window.")
    feedback: tuple[str, ...] = ()
    instruction_following: bool
    violation: bool
    latency_ms: float
    finalized_by: Literal["next_message", "session_ended", "timer"]


class SessionSummary(Message):
    """Per session: depth (user turns), duration, end reason."""

    kind: Literal["session_summary"] = "session_summary"
    schema_version: SchemaVersion = SCHEMA_VERSION
    user_id: str
    conversation_id: str
    character_id: str
    arm: Arm
    model_version: str
    started_ts: UtcDatetime
    ended_ts: UtcDatetime
    user_turns: int = Field(ge=0)
    responses: int = Field(ge=0)
    duration_s: float = Field(ge=0)
    end_reason: str


class _ArmWindow(Message):
    """Which window an ArmWindowAggregate counts: arm, model version, window, partition."""

    kind: Literal["arm_window"] = "arm_window"
    schema_version: SchemaVersion = SCHEMA_VERSION
    arm: Arm
    model_version: str
    window_start: UtcDatetime
    window_s: int = Field(gt=0)
    partition: int | None = Field(default=None, description="Source partition of a partial; None once merged.")


def counter_model_fields(counters: type[WindowCounters]) -> dict[str, Any]:
    """Pydantic field definitions (for ``create_model``) of the counters of ``counters``:
    same names, order, defaults and descriptions; histograms are tuples on the wire."""
    hints = get_type_hints(counters)
    out: dict[str, Any] = {}
    for f in counters.counter_fields():
        annotation, default = hints[f.name], default_of(f)
        if get_origin(annotation) is list:
            annotation, default = GenericAlias(tuple, (*get_args(annotation), ...)), tuple(default)
        out[f.name] = (annotation, Field(default=default, description=f.metadata["description"]))
    return out


if TYPE_CHECKING:
    # Type checkers see the window's key fields only: typed code reads the counters through
    # ArmWindowAggregate.counters(), a WindowCounters.
    _CountedArmWindow = _ArmWindow
else:
    _CountedArmWindow = create_model(
        "_CountedArmWindow", __base__=_ArmWindow, __module__=__name__, **counter_model_fields(WindowCounters)
    )


class ArmWindowAggregate(_CountedArmWindow, EngagementRates):
    """Per arm and model version, per tumbling event-time window: additive counts.

    Every counter is a sum, so partials from several partitions merge by addition; rates
    are derived. Sums of squares let the canary compute variances (delta method).
    """

    counters_type: ClassVar[type[WindowCounters]] = WindowCounters
    """The counters this message carries (a subclass of WindowCounters may add some)."""

    def counters(self) -> WindowCounters:
        """This window's counts as a (mutable, new) WindowCounters."""
        return self.counters_type.from_fields(self.__dict__)

    @classmethod
    def of(
        cls,
        counters: WindowCounters,
        *,
        arm: str,
        model_version: str,
        window_start: datetime,
        window_s: int,
        partition: int | None,
    ) -> Self:
        """The message for ``counters`` of the window named by the other arguments (validated)."""
        return cls.model_validate(
            {
                "arm": arm,
                "model_version": model_version,
                "window_start": window_start,
                "window_s": window_s,
                "partition": partition,
                **counters.as_fields(),
            }
        )

    @classmethod
    def counting(cls, counters: type[WindowCounters]) -> type[ArmWindowAggregate]:
        """The message type for a subclass of WindowCounters that adds counters (its
        fields follow these); what ArmWindowAggregate is for WindowCounters itself."""
        new = {k: v for k, v in counter_model_fields(counters).items() if k not in cls.model_fields}
        model = create_model(f"ArmWindowAggregate_{counters.__name__}", __base__=cls, __module__=cls.__module__, **new)
        model.counters_type = counters
        return model


EngagementSignal = Annotated[ResponseOutcome | SessionSummary | ArmWindowAggregate, Field(discriminator="kind")]
engagement_signal_adapter: TypeAdapter[EngagementSignal] = TypeAdapter(EngagementSignal)
