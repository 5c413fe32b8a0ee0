"""From per-arm window aggregates to metric results and a decision. Pure: no I/O.

Goals (two-sided mSPRT, τ = MDE): continue rate (per response), depth (user turns per
session), breadth (users engaged / users active on the arm, per window). Guardrails (one-sided: the two-sided
mixture at 2α, rejecting only in the harmful direction; τ = tolerance): violation rate,
instruction-following rate, error rate, and the share of responses slower than the
baseline's p95 latency bucket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar, overload

import numpy as np

from schemas import ArmWindowAggregate, CanaryAction, MetricResult, MetricVerdict, WindowCounters
from serving.canary import stats
from serving.canary.canary_config import GOALS, GUARDRAILS, CanaryConfig

Role = Literal["goal", "guardrail"]
# Guardrail → sign of harm: +1 when a higher candidate value is worse.
_HARM_SIGN = {
    "violation_rate": 1.0,
    "instruction_following_rate": -1.0,
    "error_rate": 1.0,
    "latency_over_baseline_p95": 1.0,
}


@dataclass
class ArmTotals(WindowCounters):
    """One arm's window counters summed over its aggregates (partials merge by addition),
    plus the gateway's request and error counts, which no window carries."""

    requests: int = 0
    errors: int = 0


T = TypeVar("T", bound=ArmTotals)


@overload
def merge(aggregates: Iterable[ArmWindowAggregate]) -> ArmTotals: ...
@overload
def merge(aggregates: Iterable[ArmWindowAggregate], totals_type: type[T]) -> T: ...
def merge(aggregates: Iterable[ArmWindowAggregate], totals_type: type[ArmTotals] = ArmTotals) -> ArmTotals:
    """Sum of every counter of ``aggregates``; ``totals_type`` for counters a subclass of
    WindowCounters adds (an ArmTotals that also derives from that subclass)."""
    totals = totals_type()
    for agg in aggregates:
        totals.add(agg.counters())
    return totals


@dataclass(frozen=True)
class Analysis:
    metrics: tuple[MetricResult, ...]
    srm_p_value: float | None
    n_baseline: int
    n_candidate: int
    horizon_n: int

    def metric(self, name: str) -> MetricResult:
        return next(r for r in self.metrics if r.name == name)

    def summary(self) -> dict[str, float | int | None]:
        return lift_summary(self.metrics)


def lift_summary(metrics: Iterable[MetricResult]) -> dict[str, float | int | None]:
    """The lifts a report needs, from an Analysis or a published CanaryDecision's metrics:
    ``continue_rate_lift`` with its always-valid interval ``ci_low``/``ci_high``, and the
    depth and breadth lifts (each with interval), as candidate − baseline."""
    by_name = {r.name: r for r in metrics}
    out: dict[str, float | int | None] = {}
    cr = by_name.get("continue_rate")
    out.update(
        continue_rate_lift=cr.lift if cr else None,
        ci_low=cr.ci_low if cr else None,
        ci_high=cr.ci_high if cr else None,
        continue_rate_p_value=cr.p_value if cr else None,
        n_baseline=cr.n_baseline if cr else 0,
        n_candidate=cr.n_candidate if cr else 0,
    )
    for name in ("depth", "breadth", "violation_rate", "instruction_following_rate"):
        r = by_name.get(name)
        out[f"{name}_lift"] = r.lift if r else None
        out[f"{name}_ci_low"] = r.ci_low if r else None
        out[f"{name}_ci_high"] = r.ci_high if r else None
    return out


def _bernoulli(
    name: str,
    role: Role,
    sb: int,
    nb: int,
    sc: int,
    nc: int,
    tau2: float,
    alpha: float,
    p_min: dict[str, float],
    harm_sign: float = 0.0,
) -> MetricResult:
    pb = sb / nb if nb else 0.0
    pc = sc / nc if nc else 0.0
    var = float(stats.bernoulli_diff_var(pb, nb, pc, nc))
    return _result(name, role, pb, pc, nb, nc, var, tau2, alpha, p_min, harm_sign)


MIN_UNITS = 30
"""Units (responses, sessions, users) each arm needs before a metric can be judged."""


def _result(
    name: str,
    role: Role,
    mb: float,
    mc: float,
    nb: int,
    nc: int,
    var: float,
    tau2: float,
    alpha: float,
    p_min: dict[str, float],
    harm_sign: float,
) -> MetricResult:
    lift = mc - mb
    if nb == 0 or nc == 0 or not np.isfinite(var):
        return MetricResult(
            name=name,
            role=role,
            baseline=mb,
            candidate=mc,
            lift=0.0,
            ci_low=0.0,
            ci_high=0.0,
            p_value=p_min.get(name, 1.0),
            n_baseline=nb,
            n_candidate=nc,
            verdict="no_data",
        )
    var = max(var, 1e-12)  # a degenerate arm (all 0 or all 1) still has sampling uncertainty
    level = alpha if role == "goal" else 2 * alpha  # guardrails: one-sided α from the two-sided 2α mixture
    if min(nb, nc) < MIN_UNITS:
        # A plug-in variance from a handful of units is no variance at all (one session, p̂ = 0):
        # report the numbers, judge nothing, and keep these looks out of the running p-values.
        half = float(stats.confidence_halfwidth(var, tau2, level))
        return MetricResult(
            name=name,
            role=role,
            baseline=mb,
            candidate=mc,
            lift=lift,
            ci_low=lift - half,
            ci_high=lift + half,
            p_value=p_min.get(name, 1.0),
            n_baseline=nb,
            n_candidate=nc,
            verdict="inconclusive",
        )
    p_now = float(stats.msprt_p_value(lift, var, tau2))
    # Running minima per direction, so evidence of a gain is never read as evidence of a loss.
    up = p_min[f"{name}:+"] = min(p_min.get(f"{name}:+", 1.0), p_now if lift > 0 else 1.0)
    down = p_min[f"{name}:-"] = min(p_min.get(f"{name}:-", 1.0), p_now if lift < 0 else 1.0)
    p = p_min[name] = min(up, down)
    half = float(stats.confidence_halfwidth(var, tau2, level))
    verdict: MetricVerdict
    if role == "goal":
        verdict = "worse" if down <= level else "better" if up <= level else "inconclusive"
    else:
        harm_p = up if harm_sign > 0 else down
        verdict = "breach" if harm_p <= level else "inconclusive"
    return MetricResult(
        name=name,
        role=role,
        baseline=mb,
        candidate=mc,
        lift=lift,
        ci_low=lift - half,
        ci_high=lift + half,
        p_value=p,
        n_baseline=nb,
        n_candidate=nc,
        verdict=verdict,
    )


def _slow_counts(buckets: list[int], edge: int) -> tuple[int, int]:
    return int(sum(buckets[edge + 1 :])), int(sum(buckets))


def _p95_edge(buckets: list[int]) -> int:
    total = sum(buckets)
    if not total:
        return len(buckets) - 1
    cum = np.cumsum(buckets)
    return int(np.searchsorted(cum, 0.95 * total))


def horizon_n(config: CanaryConfig, baseline_rate: float) -> int:
    p = min(max(baseline_rate, 0.05), 0.95)
    return int(
        config.horizon_factor * stats.fixed_horizon_n(config.mde["continue_rate"], p * (1 - p), config.goal_alpha)
    )


def analyse(
    base: ArmTotals,
    cand: ArmTotals,
    config: CanaryConfig,
    p_min: dict[str, float],
    step_users: tuple[int, int] | None = None,
    share_bp: int = 0,
) -> Analysis:
    """Compute every metric; ``p_min`` (running minimum p per metric) is updated in place.

    ``step_users`` = (baseline, candidate) users assigned since the current step began,
    tested against the share for sample-ratio mismatch.
    """
    ga, gr = config.goal_alpha, config.guardrail_alpha
    results = [
        _bernoulli(
            "continue_rate",
            "goal",
            base.continued,
            base.responses,
            cand.continued,
            cand.responses,
            stats.tau2_for_mde(config.mde["continue_rate"]),
            ga,
            p_min,
        ),
    ]
    mb, mc = base.mean_depth, cand.mean_depth
    vb = max(0.0, base.user_turns_sq / base.sessions - mb * mb) if base.sessions else 0.0
    vc = max(0.0, cand.user_turns_sq / cand.sessions - mc * mc) if cand.sessions else 0.0
    var = float(stats.mean_diff_var(vb, base.sessions, vc, cand.sessions))
    results.append(
        _result(
            "depth",
            "goal",
            mb,
            mc,
            base.sessions,
            cand.sessions,
            var,
            stats.tau2_for_mde(config.mde["depth"]),
            ga,
            p_min,
            0.0,
        )
    )
    results.append(
        _bernoulli(
            "breadth",
            "goal",
            base.users_engaged,
            base.users_active,
            cand.users_engaged,
            cand.users_active,
            stats.tau2_for_mde(config.mde["breadth"]),
            ga,
            p_min,
        )
    )
    tol = config.tolerance

    def t2(name: str) -> float:
        return stats.tau2_for_mde(max(tol[name], 1e-3))

    results.append(
        _bernoulli(
            "violation_rate",
            "guardrail",
            base.violations,
            base.responses,
            cand.violations,
            cand.responses,
            t2("violation_rate"),
            gr,
            p_min,
            1.0,
        )
    )
    results.append(
        _bernoulli(
            "instruction_following_rate",
            "guardrail",
            base.instruction_following,
            base.responses,
            cand.instruction_following,
            cand.responses,
            t2("instruction_following_rate"),
            gr,
            p_min,
            -1.0,
        )
    )
    results.append(
        _bernoulli(
            "error_rate",
            "guardrail",
            base.errors,
            base.requests,
            cand.errors,
            cand.requests,
            t2("error_rate"),
            gr,
            p_min,
            1.0,
        )
    )
    edge = _p95_edge(base.latency_buckets)
    sb, nb = _slow_counts(base.latency_buckets, edge)
    sc, nc = _slow_counts(cand.latency_buckets, edge)
    results.append(
        _bernoulli(
            "latency_over_baseline_p95", "guardrail", sb, nb, sc, nc, t2("latency_over_baseline_p95"), gr, p_min, 1.0
        )
    )
    # A guardrail whose whole interval of harm lies below its tolerance is shown to be fine.
    final = []
    for r in results:
        if r.role == "guardrail" and r.verdict == "inconclusive":
            worst = r.ci_high if _HARM_SIGN[r.name] > 0 else -r.ci_low
            if worst < tol[r.name]:
                r = r.model_copy(update={"verdict": "ok"})
        final.append(r)
    srm = None
    expected_min = sum(step_users) * min(share_bp, 10_000 - share_bp) / 10_000 if step_users else 0.0
    if step_users is not None and 0 < share_bp < 10_000 and expected_min >= config.srm_min_expected:
        srm = stats.srm_p_value([step_users[0], step_users[1]], [10_000 - share_bp, share_bp])
    rate = base.continued / base.responses if base.responses else 0.5
    return Analysis(tuple(final), srm, base.responses, cand.responses, horizon_n(config, rate))


def decide(analysis: Analysis, config: CanaryConfig, step_index: int, step_samples: int) -> tuple[CanaryAction, str]:
    """(action, reason) for one evaluation: halt, rollback, promote, advance or hold."""
    if analysis.srm_p_value is not None and analysis.srm_p_value < config.srm_alpha:
        return (
            "halt",
            f"sample ratio mismatch (p={analysis.srm_p_value:.2g} < {config.srm_alpha}): assignment or logging is broken",
        )
    by_verdict: dict[str, list[str]] = {}
    for r in analysis.metrics:
        if r.role == "goal" and r.name not in config.deciding_goals:
            continue  # reported, not deciding
        by_verdict.setdefault(r.verdict, []).append(r.name)
    if by_verdict.get("breach"):
        return "rollback", f"guardrail breach: {', '.join(by_verdict['breach'])}"
    if by_verdict.get("worse"):
        return "rollback", f"significant loss: {', '.join(by_verdict['worse'])}"
    core = [analysis.metric(n) for n in ("continue_rate", "violation_rate")]
    if any(r.verdict == "no_data" for r in core):
        action: CanaryAction = "hold" if config.on_no_data == "hold" else "rollback"
        return action, "no data: " + ", ".join(r.name for r in core if r.verdict == "no_data")
    if step_samples < config.min_samples_per_step:
        return "hold", f"collecting: {step_samples}/{config.min_samples_per_step} candidate responses at this step"
    guard_ok = all(analysis.metric(n).verdict in ("ok", "no_data") for n in GUARDRAILS)
    gains = [n for n in GOALS if n in config.deciding_goals and analysis.metric(n).verdict == "better"]
    next_share = config.steps_bp[step_index + 1] if step_index + 1 < len(config.steps_bp) else 10_000
    last_step = next_share >= 10_000
    if guard_ok and last_step:
        if gains:
            return "promote", f"significant gain: {', '.join(gains)}; guardrails within tolerance"
        if config.promote_on == "non_inferior":
            return "promote", "no goal worse; guardrails within tolerance"
    elif guard_ok:
        return "advance", "guardrails within tolerance, no significant loss" + (
            f"; gain: {', '.join(gains)}" if gains else ""
        )
    if analysis.n_candidate >= analysis.horizon_n:
        reaction = config.on_inconclusive
        return (
            "hold" if reaction == "hold" else reaction
        ), f"inconclusive at the horizon ({analysis.n_candidate} ≥ {analysis.horizon_n} responses)"
    pending = [n for n in GUARDRAILS if analysis.metric(n).verdict == "inconclusive"]
    return "hold", "inconclusive: " + (
        f"guardrails not yet shown within tolerance ({', '.join(pending)})" if pending else "no significant gain yet"
    )
