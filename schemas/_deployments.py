"""Deployment state and canary decisions: the compacted `serving.deployments` topic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas._base import SCHEMA_VERSION, Message, SchemaVersion, UtcDatetime

CanaryAction = Literal["start", "hold", "advance", "promote", "rollback", "halt", "pause", "resume", "reject"]
MetricVerdict = Literal["better", "worse", "inconclusive", "no_data", "breach", "ok"]


class MetricResult(Message):
    """One metric of one canary analysis."""

    name: str
    role: Literal["goal", "guardrail"]
    baseline: float
    candidate: float
    lift: float = Field(description="candidate − baseline (absolute).")
    ci_low: float = Field(description="Always-valid interval of the lift: the intersection of every look's so far.")
    ci_high: float
    p_value: float = Field(description="Always-valid p-value (running minimum).")
    n_baseline: int
    n_candidate: int
    verdict: MetricVerdict
    variance: Literal["bernoulli", "normal", "session", "session_cuped"] = Field(
        default="bernoulli",
        description="How the variance of the lift was estimated: per unit as independent "
        "draws (bernoulli, or normal for a mean), or with sessions as the units of a per-reply "
        "rate (delta method; session_cuped: and adjusted by CUPED, baseline and candidate "
        "then being the adjusted rates).",
    )
    design_effect: float | None = Field(
        default=None,
        description="The lift's variance over what independent replies would give (session variances only).",
    )


class CanaryDecision(Message):
    """A decision of the controller (or an operator) with the statistics behind it."""

    kind: Literal["decision"] = "decision"
    schema_version: SchemaVersion = SCHEMA_VERSION
    decision_id: str
    model: str
    baseline_version: str | None
    candidate_version: str | None
    action: CanaryAction
    reason: str
    share_bp_before: int = Field(ge=0, le=10_000)
    share_bp_after: int = Field(ge=0, le=10_000)
    metrics: tuple[MetricResult, ...] = ()
    srm_p_value: float | None = None
    actor: str = Field(default="controller", description="controller, or the operator who asked (admin API).")
    ts: UtcDatetime
    fencing_token: int | None = Field(
        default=None,
        description="Leader lease token of the replica that decided; a decision with a token below one "
        "already seen comes from a leader that had been replaced.",
    )


class DeploymentState(Message):
    """Desired routing state of one public model name. Keyed by ``model``; the latest wins."""

    kind: Literal["state"] = "state"
    schema_version: SchemaVersion = SCHEMA_VERSION
    model: str
    baseline_version: str | None
    candidate_version: str | None = None
    share_bp: int = Field(default=0, ge=0, le=10_000, description="Candidate share in basis points of users.")
    step_index: int = -1
    status: Literal["idle", "canary", "paused", "halted"] = "idle"
    experiment_salt: str = Field(description="Salt of the sticky user→bucket hash; new per experiment.")
    updated_ts: UtcDatetime
    last_decision_id: str | None = None
    fencing_token: int | None = Field(default=None, description="Leader lease token of the replica that wrote it.")


DeploymentRecord = Annotated[DeploymentState | CanaryDecision, Field(discriminator="kind")]
deployment_record_adapter: TypeAdapter[DeploymentRecord] = TypeAdapter(DeploymentRecord)


def deployment_record_key(record: DeploymentState | CanaryDecision) -> str:
    """State is keyed by model (compaction keeps the latest); each decision by its own id."""
    if isinstance(record, DeploymentState):
        return record.model
    return f"{record.model}#{record.decision_id}"
