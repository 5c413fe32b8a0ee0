"""Settings of the canary analysis and its decisions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.canary.stats import tau2_for_mde

GOALS = ("continue_rate", "depth", "breadth")
GUARDRAILS = ("violation_rate", "instruction_following_rate", "error_rate", "latency_over_baseline_p95")


class CanaryConfig(BaseModel):
    """``alpha`` is the family-wise budget for a wrong promote or rollback: half is split
    evenly over the goal tests (two-sided), half over the guardrail tests (one-sided)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps_bp: tuple[int, ...] = Field(
        default=(500, 2000, 5000, 10_000),
        description="Candidate share per step, basis points; the last step (10000) means promote.",
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Family-wise error rate of a wrong promote or rollback."
    )
    srm_alpha: float = Field(
        default=0.005,
        gt=0,
        lt=0.5,
        description="Probability that an experiment without a sample-ratio mismatch halts on one anyway, "
        "over all its looks and steps: each step's sequential test gets an equal share.",
    )
    srm_prior_units: float = Field(
        default=100.0,
        gt=0,
        description="Concentration κ of the sample-ratio test's beta mixture over the "
        "candidate's true share (about the users at which a mismatch should show): larger "
        "finds smaller mismatches in long steps, smaller finds large ones sooner.",
    )
    mde: dict[str, float] = Field(
        default_factory=lambda: {"continue_rate": 0.03, "depth": 0.3, "breadth": 0.03},
        description="Minimum detectable effect per goal metric (absolute); sets the mSPRT mixture τ = MDE.",
    )
    tolerance: dict[str, float] = Field(
        default_factory=lambda: {
            "violation_rate": 0.03,
            "instruction_following_rate": 0.03,
            "error_rate": 0.01,
            "latency_over_baseline_p95": 0.05,
        },
        description="Largest harm per guardrail still acceptable; an advance needs the interval of the harm below it.",
    )
    srm_min_expected: float = Field(
        default=10.0,
        gt=0,
        description="The sample-ratio check runs once each arm expects at "
        "least this many users at the step (the chi-square approximation needs counts).",
    )
    deciding_goals: tuple[str, ...] = Field(
        default=("continue_rate",),
        description="Goals whose verdict may promote or "
        "roll back; the others are reported with their intervals. Continue rate is a "
        "per-reply outcome decided within seconds. Depth counts a session in the window "
        "where it ends, so while an arm is young its ended sessions are its short ones "
        "(its long ones have not ended yet): add depth here only when sessions are far "
        "shorter than a canary step.",
    )
    burn_in_s: float = Field(
        default=1800.0,
        ge=0,
        description="Windows overlapping the first burn_in_s after the canary "
        "opens or a step changes are left out of every metric, for both arms. Right after a change the "
        "arm that gains users has only young conversations (early turns, short sessions) while the other "
        "has all ages: comparing them then measures conversation age, not the model. Set it to about the "
        "longest session.",
    )
    min_samples_per_step: int = Field(
        default=200, gt=0, description="Candidate responses needed at a step before it may advance."
    )
    horizon_factor: float = Field(
        default=2.5,
        gt=0,
        description="Experiment ends inconclusive when the candidate has this many times the fixed-horizon sample of the continue-rate MDE.",
    )
    promote_on: Literal["gain", "non_inferior"] = Field(
        default="gain",
        description="gain: a goal must be significantly better to promote; non_inferior: guardrails and goals not worse.",
    )
    on_no_data: Literal["hold", "rollback"] = Field(default="hold", description="Reaction when an arm has no data.")
    on_inconclusive: Literal["hold", "rollback", "promote"] = Field(
        default="rollback", description="Reaction when the horizon is reached without evidence."
    )
    poll_interval_s: float = Field(default=10.0, gt=0, description="How often `flywheel serve` evaluates the canary.")
    cuped: bool = Field(
        default=True,
        description="Adjust the continue rate by CUPED on each user's pre-period continue rate "
        "(the signals processor's covariate): same expected lift, smaller variance when users "
        "differ from one another. Off: the plain per-reply rate, sessions as units.",
    )

    @model_validator(mode="after")
    def _check(self) -> CanaryConfig:
        steps = self.steps_bp
        if not steps or list(steps) != sorted(set(steps)) or steps[0] <= 0 or steps[-1] > 10_000:
            raise ValueError(f"steps_bp {steps} must be strictly increasing basis points in (0, 10000]")
        for name in GOALS:
            if self.mde.get(name, 0) <= 0:
                raise ValueError(f"mde[{name!r}] must be > 0 (got {self.mde.get(name)}); set it in canary.mde")
        unknown = [g for g in self.deciding_goals if g not in GOALS]
        if unknown:
            raise ValueError(f"deciding_goals {unknown} are not goals; choose from {GOALS}")
        for name in GUARDRAILS:
            if self.tolerance.get(name, -1) < 0:
                raise ValueError(f"tolerance[{name!r}] must be >= 0; set it in canary.tolerance")
        return self

    @property
    def goal_alpha(self) -> float:
        """Per-goal two-sided level."""
        return self.alpha / 2 / len(GOALS)

    @property
    def guardrail_alpha(self) -> float:
        """Per-guardrail one-sided level."""
        return self.alpha / 2 / len(GUARDRAILS)

    @property
    def srm_tests(self) -> int:
        """Steps with a sample-ratio test (those with both arms: a share below 100 %)."""
        return max(1, sum(1 for share in self.steps_bp if share < 10_000))

    def tau2(self, metric: str) -> float:
        """mSPRT mixture variance of ``metric``, tuned to its MDE (goals) or tolerance
        (guardrails, at their one-sided level) by ``stats.tau2_for_mde``."""
        if metric in GOALS:
            return tau2_for_mde(self.mde[metric], self.goal_alpha)
        return tau2_for_mde(max(self.tolerance[metric], 1e-3), 2 * self.guardrail_alpha)
