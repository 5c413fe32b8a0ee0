"""A canary decision as it is published, with the statistics behind it (also set on the
Prometheus gauges of the latest analysis)."""

from __future__ import annotations

import uuid
from datetime import datetime

from schemas import CanaryAction, CanaryDecision, DeploymentState
from serving import _metrics as m
from serving.canary.analysis import Analysis


def build_decision(
    model: str,
    before: DeploymentState | None,
    after: DeploymentState | None,
    action: CanaryAction,
    reason: str,
    now: datetime,
    actor: str,
    analysis: Analysis | None = None,
    candidate: str | None = None,
    token: int | None = None,
) -> CanaryDecision:
    ref = before or after
    if analysis is not None:
        for r in analysis.metrics:
            m.CANARY_LIFT.labels(model, r.name).set(r.lift)
            m.CANARY_P.labels(model, r.name).set(r.p_value)
        if analysis.srm_p_value is not None:
            m.SRM_P.labels(model).set(analysis.srm_p_value)
    return CanaryDecision(
        decision_id=uuid.uuid4().hex,
        model=model,
        baseline_version=ref.baseline_version if ref else None,
        candidate_version=candidate
        or (before.candidate_version if before else None)
        or (after.candidate_version if after else None),
        action=action,
        reason=reason,
        share_bp_before=before.share_bp if before else 0,
        share_bp_after=after.share_bp if after else 0,
        metrics=analysis.metrics if analysis else (),
        srm_p_value=analysis.srm_p_value if analysis else None,
        actor=actor,
        ts=now,
        fencing_token=token,
    )
