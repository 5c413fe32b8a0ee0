"""How the demo reads generations off the topics: gate rejections, canary outcomes, reward
models that are not generations, the planted job, and the final-vs-base comparison."""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.demo._assemble import Outcomes as _Outcomes
from flywheel.demo._assemble import compare_versions
from flywheel.demo._tracker import Tracker as _Tracker
from schemas import CanaryDecision, CheckpointManifest, EvalReport, MetricResult, ResponseOutcome


def _manifest(
    version: str, *, passed: bool = True, kind: str = "sft", model: str = "policy", job: str = "job"
) -> CheckpointManifest:
    report = EvalReport(
        baseline_version="base",
        prompts=10,
        instruction_following=0.8,
        violation_rate=0.05,
        passed=passed,
        reasons=() if passed else ("violation rate rose",),
    )
    return CheckpointManifest(
        model=model,
        version=version,
        parent="base",
        kind="full",
        job_id=job,
        job_kind=kind,  # type: ignore[arg-type]
        eval=report,
        status="published" if passed else "rejected",
        created_ts=datetime.now(UTC),
    )


def _decision(candidate: str, action: str, share_after: int = 0, metrics: tuple = ()) -> CanaryDecision:
    return CanaryDecision(
        decision_id=f"{candidate}-{action}",
        model="policy",
        baseline_version="base",
        candidate_version=candidate,
        action=action,
        reason=action,
        share_bp_before=0,  # type: ignore[arg-type]
        share_bp_after=share_after,
        metrics=metrics,
        ts=datetime.now(UTC),
    )


def test_generations_are_numbered_and_decided_from_gate_and_canary() -> None:
    t = _Tracker("policy", "base")
    t.planted_job = "dpo-planted"
    assert t.on_manifest(_manifest("v-rm", kind="reward", model="policy-reward"), 1.0) is None
    g1 = t.on_manifest(_manifest("v1"), 2.0)
    g2 = t.on_manifest(_manifest("v2", passed=False, kind="dpo", job="dpo-planted"), 3.0)
    assert g1 is not None and g2 is not None and (g1.number, g2.number) == (1, 2)
    assert g2.planted and g2.decision == "rejected" and "violation" in g2.reason
    assert t.on_decision(_decision("v1", "start", 2000), 4.0) is None and g1.share_bp == 2000
    metric = MetricResult(
        name="continue_rate",
        role="goal",
        baseline=0.5,
        candidate=0.6,
        lift=0.1,
        ci_low=0.02,
        ci_high=0.18,
        p_value=0.01,
        n_baseline=300,
        n_candidate=300,
        verdict="better",
    )
    assert t.on_decision(_decision("v1", "promote", 0, (metric,)), 5.0) is g1
    assert g1.decision == "promoted" and g1.metrics == (metric,)
    assert [g.number for g in t.decided()] == [1, 2] and t.reward_models == 1


def test_final_vs_base_interval_excludes_zero_only_with_a_real_gap() -> None:
    def outcomes(pairs: dict[str, tuple[int, int]]) -> _Outcomes:
        o = _Outcomes()
        for version, (n, k) in pairs.items():
            for i in range(n):
                o.add(
                    ResponseOutcome(
                        user_id="u",
                        conversation_id="c",
                        character_id="x",
                        turn=1,
                        request_id=f"{version}{i}",
                        model_version=version,
                        arm="baseline",
                        response_ts=datetime.now(UTC),
                        continued=i < k,
                        instruction_following=True,
                        violation=False,
                        latency_ms=1.0,
                        finalized_by="next_message",
                    )
                )
        return o

    clear = compare_versions(outcomes({"base": (800, 440), "v2": (800, 600)}), "base", "v2", alpha=0.05, mde=0.06)
    assert clear.ci_low is not None and clear.ci_low > 0 and abs(clear.continue_rate_lift - 0.2) < 1e-9  # type: ignore[operator]
    same = compare_versions(outcomes({"base": (800, 440), "v2": (800, 450)}), "base", "v2", alpha=0.05, mde=0.06)
    assert same.ci_low is not None and same.ci_low < 0 < (same.ci_high or 0)
