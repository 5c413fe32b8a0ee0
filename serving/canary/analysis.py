"""From per-arm window aggregates to metric results and a decision. Pure: no I/O.

Goals (two-sided mSPRT, τ tuned to the MDE): continue rate (per response), depth (user
turns per session), breadth (users engaged / users active on the arm, per window).
Guardrails (one-sided: the two-sided mixture at 2α, rejecting only in the harmful
direction; τ tuned to the tolerance): violation rate, instruction-following rate, error
rate, and the share of responses slower than the baseline's p95 latency bucket.

Per-reply rates (continue, violation, instruction-following, slow replies) take sessions
as the units of their variance (delta method on the per-session sums the signals
processor emits), since a conversation's replies are not independent; the continue rate
is CUPED-adjusted on the users' pre-period continue rate when ``CanaryConfig.cuped``.
Windows of a processor that emits no per-session sums fall back to independent replies.

``p_min``, the experiment's running state (``Experiment.p_min``), holds per metric the
running minimum p-value (``<name>``, and per direction ``<name>:+`` / ``<name>:-``) and
the running intersection of its always-valid intervals (``<name>:lo`` / ``<name>:hi``),
and per step share the running minimum of the sample-ratio p-value (``srm@<share bp>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar, overload

import numpy as np

from schemas import ArmWindowAggregate, CanaryAction, MetricResult, WindowCounters
from serving.canary import stats
from serving.canary._judge import bernoulli, per_reply_rate, result, session_sums, slow_session_sums
from serving.canary.canary_config import GOALS, GUARDRAILS, CanaryConfig

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
    arms = (base, cand)
    results = [
        per_reply_rate(
            "continue_rate",
            "goal",
            ((base.continued, base.responses), (cand.continued, cand.responses)),
            arms,
            session_sums("continued"),
            config.tau2("continue_rate"),
            ga,
            p_min,
            cuped=config.cuped,
        ),
    ]
    mb, mc = base.mean_depth, cand.mean_depth
    vb = max(0.0, base.user_turns_sq / base.sessions - mb * mb) if base.sessions else 0.0
    vc = max(0.0, cand.user_turns_sq / cand.sessions - mc * mc) if cand.sessions else 0.0
    var = float(stats.mean_diff_var(vb, base.sessions, vc, cand.sessions))
    results.append(
        result(
            "depth",
            "goal",
            mb,
            mc,
            base.sessions,
            cand.sessions,
            var,
            config.tau2("depth"),
            ga,
            p_min,
            0.0,
            method="normal",
        )
    )
    results.append(
        bernoulli(
            "breadth",
            "goal",
            base.users_engaged,
            base.users_active,
            cand.users_engaged,
            cand.users_active,
            config.tau2("breadth"),
            ga,
            p_min,
        )
    )
    tol = config.tolerance
    t2 = config.tau2
    results.append(
        per_reply_rate(
            "violation_rate",
            "guardrail",
            ((base.violations, base.responses), (cand.violations, cand.responses)),
            arms,
            session_sums("violations"),
            t2("violation_rate"),
            gr,
            p_min,
            1.0,
        )
    )
    results.append(
        per_reply_rate(
            "instruction_following_rate",
            "guardrail",
            ((base.instruction_following, base.responses), (cand.instruction_following, cand.responses)),
            arms,
            session_sums("instruction_following"),
            t2("instruction_following_rate"),
            gr,
            p_min,
            -1.0,
        )
    )
    results.append(
        bernoulli(
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
    results.append(
        per_reply_rate(
            "latency_over_baseline_p95",
            "guardrail",
            (_slow_counts(base.latency_buckets, edge), _slow_counts(cand.latency_buckets, edge)),
            arms,
            slow_session_sums(edge),
            t2("latency_over_baseline_p95"),
            gr,
            p_min,
            1.0,
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
        # Sequential: the running minimum of an always-valid p-value per step, so that
        # looking after every window does not add false alarms; one test per step with a
        # split share (Bonferroni) of srm_alpha, so srm_alpha bounds a whole experiment's.
        p_now = float(
            stats.srm_sequential_p_value(step_users[1], step_users[0], share_bp / 10_000, config.srm_prior_units)
        )
        key = f"srm@{share_bp}"
        p_min[key] = min(p_min.get(key, 1.0), p_now)
        srm = min(1.0, p_min[key] * config.srm_tests)
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
    pending = [n for n in GUARDRAILS if analysis.metric(n).verdict == "inconclusive"]
    # What is still missing: a gain held back by a guardrail not yet within tolerance reads
    # differently to an operator than no gain at all.
    missing = (
        f"guardrails not yet shown within tolerance ({', '.join(pending)})"
        + (f" despite a significant gain ({', '.join(gains)})" if gains else "")
        if pending
        else "no significant gain yet"
    )
    if analysis.n_candidate >= analysis.horizon_n:
        reaction = config.on_inconclusive
        return (
            "hold" if reaction == "hold" else reaction
        ), f"inconclusive at the horizon ({analysis.n_candidate} ≥ {analysis.horizon_n} responses): {missing}"
    return "hold", f"inconclusive: {missing}"
