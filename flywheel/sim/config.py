"""Settings of the user simulator (one frozen model; FlywheelSettings aggregates it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SimulatorConfig(BaseModel):
    """How many simulated users, how they talk, how simulated time moves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: int = Field(default=200, gt=0, description="Size of the simulated population.")
    seed: int = Field(default=7, description="Seed of the population and of every user decision (reproducible runs).")
    concurrency: int = Field(default=32, gt=0, description="Most requests in flight at once (lets the engine batch).")
    model: str = Field(default="policy", description="Public model name sent in each request.")
    max_turns: int = Field(
        default=6,
        gt=0,
        description="A session ends after this many user turns. Every request carries "
        "the whole conversation so far, as an OpenAI-API client does (the gateway numbers turns from it).",
    )
    max_tokens: int = Field(default=64, gt=0, description="max_tokens of each completion request.")
    request_timeout_s: float = Field(default=60.0, gt=0, description="Per-request HTTP timeout.")
    visit_probability: float = Field(default=0.6, gt=0, le=1, description="Chance a user opens the app on day 1.")
    return_base: float = Field(
        default=0.55, gt=0, lt=1, description="Chance to come back the next day after a neutral session."
    )
    return_sensitivity: float = Field(
        default=2.5,
        ge=0,
        description="How strongly the last sessions' satisfaction moves the return chance (logit units).",
    )
    active_window_s: float = Field(
        default=1800.0, gt=0, description="Sessions of a simulated day start within this many seconds (the daily peak)."
    )
    step_s: float = Field(
        default=60.0,
        gt=0,
        description="Simulated seconds per scheduling step; actions due in one step run concurrently.",
    )
    think_time_s: tuple[float, float] = Field(
        default=(15.0, 90.0), description="Range of simulated seconds between a reply and the next user action."
    )
    time_scale: float = Field(
        default=60.0,
        gt=0,
        description="On a real clock (a gateway that stamps events itself): "
        "simulated seconds per real second, e.g. 60 turns a 30 s think time into 0.5 s.",
    )
    start_days_ago: float = Field(
        default=45.0,
        gt=0,
        description="Simulated time starts this many days before now (event times must not lie in the future).",
    )
    surface: str = Field(default="sim", description="`surface` of the events the simulator emits.")

    @model_validator(mode="after")
    def _ranges(self) -> SimulatorConfig:
        low, high = self.think_time_s
        if not 0 < low <= high:
            raise ValueError(f"think_time_s {self.think_time_s} must be (low, high) with 0 < low <= high")
        if high >= self.step_s * 10:
            raise ValueError(f"think_time_s high ({high}) must stay below 10 x step_s ({self.step_s}); raise step_s")
        return self
