"""Engagement signals: what the signals processor publishes to `engagement.signals`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas._base import SCHEMA_VERSION, Message, SchemaVersion, UtcDatetime

Arm = Literal["baseline", "candidate"]

LATENCY_BUCKETS_MS: tuple[float, ...] = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, float("inf"))
"""Upper bounds of the latency histogram carried by window aggregates (cumulative = no)."""


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


class ArmWindowAggregate(Message):
    """Per arm and model version, per tumbling event-time window: additive counts.

    Every field is a sum, so partials from several partitions merge by addition; rates
    are derived. Sums of squares let the canary compute variances (delta method).
    """

    kind: Literal["arm_window"] = "arm_window"
    schema_version: SchemaVersion = SCHEMA_VERSION
    arm: Arm
    model_version: str
    window_start: UtcDatetime
    window_s: int = Field(gt=0)
    partition: int | None = Field(default=None, description="Source partition of a partial; None once merged.")
    sessions: int = 0
    users_assigned: int = Field(
        default=0,
        description="Distinct users whose session on this arm started in the window (the sample-ratio check counts these).",
    )
    users_engaged: int = Field(default=0, description="Distinct users who sent a message on this arm in the window.")
    users_active: int = Field(
        default=0,
        description="Distinct users with any event of a session on this arm in the window "
        "(started, wrote, or got a reply); the denominator of breadth, so breadth <= 1.",
    )
    user_turns: int = 0
    user_turns_sq: int = Field(default=0, description="Sum over sessions of user_turns squared.")
    responses: int = 0
    continued: int = 0
    instruction_following: int = 0
    violations: int = 0
    latency_ms_sum: float = 0.0
    latency_buckets: tuple[int, ...] = Field(
        default=(0,) * len(LATENCY_BUCKETS_MS), description="Counts per LATENCY_BUCKETS_MS bucket."
    )
    late_events: int = 0

    @property
    def continue_rate(self) -> float:
        return self.continued / self.responses if self.responses else 0.0

    @property
    def mean_depth(self) -> float:
        return self.user_turns / self.sessions if self.sessions else 0.0

    @property
    def breadth(self) -> float:
        return self.users_engaged / self.users_active if self.users_active else 0.0

    @property
    def instruction_following_rate(self) -> float:
        return self.instruction_following / self.responses if self.responses else 0.0

    @property
    def violation_rate(self) -> float:
        return self.violations / self.responses if self.responses else 0.0


EngagementSignal = Annotated[ResponseOutcome | SessionSummary | ArmWindowAggregate, Field(discriminator="kind")]
engagement_signal_adapter: TypeAdapter[EngagementSignal] = TypeAdapter(EngagementSignal)
