"""Settings of the engagement-signals processor."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SignalsConfig(BaseModel):
    """Event-time rules of engagement signals. ``FLYWHEEL_STREAMS__SIGNALS__<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    continue_window_s: int = Field(
        default=600,
        gt=0,
        description="A reply counts as continued when the user's next "
        "message in the conversation comes within this many seconds (event time).",
    )
    window_s: int = Field(
        default=3600, gt=0, description="Length of the tumbling event-time windows of per-arm aggregates."
    )
    grace_s: int = Field(
        default=120,
        ge=0,
        description="How long after a window's end (event time) late events are "
        "still counted in it; later ones are counted as late.",
    )
    session_idle_s: int = Field(
        default=1800,
        gt=0,
        description="A session with no event for this long (event time) is closed with end_reason 'idle_timeout'.",
    )
    user_history_s: int = Field(
        default=30 * 86400,
        gt=0,
        description="How long (event time) a user's pre-period continue rate, the "
        "covariate of the canary's CUPED adjustment, is kept after the user's last reply.",
    )
    quiet_partition_s: float | None = Field(
        default=None,
        gt=0,
        description="When set, a partition that received no "
        "event for this long (wall clock) has its event time follow the wall clock "
        "minus this much, so its windows close and sessions time out while traffic "
        "is quiet. For live traffic only: leave unset for replays and backfills, "
        "where event time is far behind the wall clock.",
    )

    @model_validator(mode="after")
    def _check(self) -> SignalsConfig:
        if self.continue_window_s > self.session_idle_s:
            raise ValueError(
                f"continue_window_s ({self.continue_window_s}) must not exceed session_idle_s "
                f"({self.session_idle_s}); raise session_idle_s"
            )
        return self
