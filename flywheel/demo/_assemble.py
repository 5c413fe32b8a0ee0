"""Assemble the demo's report from what the run saw: generations, outcomes, the base model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flywheel.demo._tracker import Tracker
from flywheel.demo.config import DemoConfig
from flywheel.demo.prediction import PredictionCheck
from flywheel.demo.report import (
    DemoReport,
    GenerationResult,
    HeldOutMetrics,
    OfflineMetrics,
    OnlineMetrics,
    VersionTraffic,
    prediction_points,
)
from schemas import EvalReport, MetricResult, ResponseOutcome

if TYPE_CHECKING:
    from flywheel.sim import SimStats


@dataclass
class Outcomes:
    """Per model version: responses and continued ones, from engagement.signals."""

    responses: dict[str, int] = field(default_factory=dict)
    continued: dict[str, int] = field(default_factory=dict)

    def add(self, o: ResponseOutcome) -> None:
        self.responses[o.model_version] = self.responses.get(o.model_version, 0) + 1
        self.continued[o.model_version] = self.continued.get(o.model_version, 0) + int(o.continued)


def offline_metrics(report: EvalReport | None) -> OfflineMetrics:
    if report is None:
        return OfflineMetrics(
            instruction_following=0.0,
            violation_rate=1.0,
            rm_win_rate=None,
            passed=False,
            reasons=("no evaluation in the manifest",),
        )
    return OfflineMetrics(
        instruction_following=report.instruction_following,
        violation_rate=report.violation_rate,
        rm_win_rate=report.win_rate,
        rm_predicted_lift=report.rm_predicted_lift,
        rm_predicted_lift_ci_low=report.rm_predicted_lift_ci_low,
        rm_predicted_lift_ci_high=report.rm_predicted_lift_ci_high,
        passed=report.passed,
        reasons=report.reasons,
        flags=report.flags,
    )


def online_metrics(metrics: tuple[MetricResult, ...], share_bp: int) -> OnlineMetrics:
    from serving.canary import lift_summary

    if not metrics:
        return OnlineMetrics(max_share_bp=share_bp)
    s = lift_summary(metrics)
    by_name = {m.name: m for m in metrics}
    cr = by_name.get("continue_rate")
    return OnlineMetrics(
        continue_rate_lift=s["continue_rate_lift"],
        ci_low=s["ci_low"],
        ci_high=s["ci_high"],
        p_value=s.get("continue_rate_p_value"),
        depth_lift=s["depth_lift"],
        breadth_lift=s["breadth_lift"],
        continue_rate_baseline=cr.baseline if cr else None,
        continue_rate_candidate=cr.candidate if cr else None,
        n_baseline=int(s["n_baseline"] or 0),
        n_candidate=int(s["n_candidate"] or 0),
        max_share_bp=share_bp,
        guardrails=tuple(m for m in metrics if m.role == "guardrail"),
    )


def compare_versions(outcomes: Outcomes, base: str, final: str, alpha: float, mde: float) -> OnlineMetrics:
    """Continue rate of ``final`` vs ``base`` replies with the canary's always-valid interval."""
    from serving.canary import stats

    nb, nc = outcomes.responses.get(base, 0), outcomes.responses.get(final, 0)
    if not nb or not nc or base == final:
        return OnlineMetrics(n_baseline=nb, n_candidate=nc)
    pb, pc = outcomes.continued[base] / nb, outcomes.continued[final] / nc
    var = float(stats.bernoulli_diff_var(pb, nb, pc, nc))
    tau2 = stats.tau2_for_mde(mde)
    half = float(stats.confidence_halfwidth(var, tau2, alpha))
    lift = pc - pb
    return OnlineMetrics(
        continue_rate_lift=lift,
        ci_low=lift - half,
        ci_high=lift + half,
        p_value=float(stats.msprt_p_value(lift, var, tau2)),
        continue_rate_baseline=pb,
        continue_rate_candidate=pc,
        n_baseline=nb,
        n_candidate=nc,
    )


def build_report(
    tracker: Tracker,
    outcomes: Outcomes,
    counts: dict[str, int],
    base_version: str,
    base_eval: EvalReport,
    config: DemoConfig,
    wall_s: float,
    sim_stats: SimStats,
    n_checkpoints: int,
    n_deployments: int,
    n_signals: int,
) -> DemoReport:
    gens = sorted(tracker.generations.values(), key=lambda g: g.number)
    first_eval = gens[0].manifest.eval if gens else None
    base = HeldOutMetrics(
        instruction_following=first_eval.baseline_instruction_following
        if first_eval and first_eval.baseline_instruction_following is not None
        else base_eval.instruction_following,
        violation_rate=first_eval.baseline_violation_rate
        if first_eval and first_eval.baseline_violation_rate is not None
        else base_eval.violation_rate,
    )
    results = []
    for g in gens:
        results.append(
            GenerationResult(
                generation=g.number,
                version=g.manifest.version,
                parent=g.manifest.parent,
                job_kind=g.manifest.job_kind,
                planted_bad=g.planted and config.plant_bad_generation is not None,
                planted_hack=g.planted and config.plant_hack_generation is not None,
                training={
                    k.removeprefix("metric."): float(v)
                    for k, v in g.manifest.training.items()
                    if k.startswith("metric.") and isinstance(v, int | float) and not isinstance(v, bool)
                },
                reward_model=rm if isinstance(rm := g.manifest.training.get("reward_model"), str) else None,
                offline=offline_metrics(g.manifest.eval),
                decision=g.decision or "undecided",
                decision_reason=g.reason,
                online=online_metrics(g.metrics, g.share_bp),
                wall_s=round((g.decided_s or wall_s) - g.seen_s, 1),
                canary_s=round((g.decided_s or wall_s) - g.canary_started_s, 1)
                if g.canary_started_s is not None and g.decision != "rejected"
                else None,
            )
        )
    promoted = [r for r in results if r.decision == "promoted"]
    final_version = promoted[-1].version if promoted else base_version
    final = (
        HeldOutMetrics(
            instruction_following=promoted[-1].offline.instruction_following,
            violation_rate=promoted[-1].offline.violation_rate,
        )
        if promoted
        else base
    )
    traffic = tuple(
        VersionTraffic(
            version=v,
            replies=s.replies,
            continue_rate=round(s.continue_rate, 4),
            instruction_following=round(s.instruction_following_rate, 4),
            violation_rate=round(s.violation_rate, 4),
            mean_depth=round(s.mean_depth, 3),
            mean_latency_ms=round(s.mean_latency_ms, 1),
            mean_reply_words=round(s.mean_reply_words, 2),
        )
        for v, s in sorted(sim_stats.by_version.items())
    )
    return DemoReport(
        recipe=config.policy_recipe,
        engine=config.engine,
        base_version=base_version,
        base=base,
        final_version=final_version,
        final=final,
        generations=tuple(results),
        final_vs_base=compare_versions(
            outcomes, base_version, final_version, alpha=0.05, mde=config.canary.mde["continue_rate"]
        ),
        prediction=PredictionCheck.of(prediction_points(tuple(results))),
        traffic=traffic,
        stages={
            **counts,
            "engagement.signals": n_signals,
            "models.checkpoints": n_checkpoints,
            "serving.deployments": n_deployments,
        },
        wall_s=round(wall_s, 1),
        settings=config.model_dump(mode="json"),
    )
