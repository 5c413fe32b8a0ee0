"""One metric at one look: its variance, running p-value, always-valid interval and
verdict (see serving.canary.analysis for the metrics and ``p_min``'s keys)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from schemas import MetricResult, MetricVerdict, WindowCounters
from serving.canary import stats

Role = Literal["goal", "guardrail"]
Variance = Literal["bernoulli", "normal", "session", "session_cuped"]


def bernoulli(
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
    return result(name, role, pb, pc, nb, nc, var, tau2, alpha, p_min, harm_sign)


MIN_UNITS = 30
"""Units (responses, sessions, users) each arm needs before a metric can be judged."""

SessionSumsOf = Callable[[WindowCounters], stats.SessionSums]
"""An arm's per-session sums of one per-reply rate."""


def session_sums(prefix: str) -> SessionSumsOf:
    """The per-session sums of the rate counted by ``session_<prefix>*`` counters."""

    def of(t: WindowCounters) -> stats.SessionSums:
        return stats.SessionSums(
            t.session_replies,
            t.session_replies_sq,
            getattr(t, f"session_{prefix}"),
            getattr(t, f"session_{prefix}_sq"),
            getattr(t, f"session_{prefix}_x_replies"),
            t.session_covariate,
            t.session_covariate_sq,
            t.session_covariate_x_replies,
            t.session_covariate_x_continued,
        )

    return of


def slow_session_sums(edge: int) -> SessionSumsOf:
    def of(t: WindowCounters) -> stats.SessionSums:
        return stats.SessionSums(
            t.session_replies,
            t.session_replies_sq,
            t.session_latency_tail[edge],
            t.session_latency_tail_sq[edge],
            t.session_latency_tail_x_replies[edge],
        )

    return of


def per_reply_rate(
    name: str,
    role: Role,
    counts: tuple[tuple[int, int], tuple[int, int]],
    arms: tuple[WindowCounters, WindowCounters],
    sums_of: SessionSumsOf,
    tau2: float,
    alpha: float,
    p_min: dict[str, float],
    harm_sign: float = 0.0,
    cuped: bool = False,
) -> MetricResult:
    """A per-reply rate (``counts`` = (hits, replies) of baseline and candidate) with
    sessions as the units of its variance, CUPED-adjusted when ``cuped``."""
    (sb, nb), (sc, nc) = counts
    base, cand = arms
    if base.session_replies == 0 and cand.session_replies == 0 and min(base.sessions, cand.sessions) >= MIN_UNITS:
        # Sessions ended but none carried per-session sums: windows of a processor that
        # emits none (an earlier build). Independent replies is all they allow.
        return bernoulli(name, role, sb, nb, sc, nc, tau2, alpha, p_min, harm_sign)
    pb = sb / nb if nb else 0.0
    pc = sc / nc if nc else 0.0
    units = min(nb, nc, base.sessions, cand.sessions)
    if units == 0 or base.session_replies == 0 or cand.session_replies == 0:
        # Replies without an ended session yet: no variance to judge them by.
        return result(name, role, pb, pc, nb, nc, float("inf"), tau2, alpha, p_min, harm_sign, units=0)
    sums = (sums_of(base), sums_of(cand))
    independent = float(stats.bernoulli_diff_var(pb, nb, pc, nc))
    if cuped:
        rates = ((sb, base.covariate_sum, nb), (sc, cand.covariate_sum, nc))
        adjusted_b, adjusted_c, cuped_var, _theta, _plain = stats.cuped_rate_diff(rates, sums)
        pb, pc, var = float(adjusted_b), float(adjusted_c), float(cuped_var)
        method: Variance = "session_cuped"
    else:
        var = float(stats.session_rate_var(sums[0], sb, nb) + stats.session_rate_var(sums[1], sc, nc))
        method = "session"
    deff = var / independent if independent > 0 else None
    return result(name, role, pb, pc, nb, nc, var, tau2, alpha, p_min, harm_sign, units=units, method=method, deff=deff)


def result(
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
    units: int | None = None,
    method: Variance = "bernoulli",
    deff: float | None = None,
) -> MetricResult:
    """``units``: how many units the smaller arm has (default: min(nb, nc))."""
    lift = mc - mb
    units = min(nb, nc) if units is None else units
    if nb == 0 or nc == 0:
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
            variance=method,
        )
    var = max(var, 1e-12)  # a degenerate arm (all 0 or all 1) still has sampling uncertainty
    level = alpha if role == "goal" else 2 * alpha  # guardrails: one-sided α from the two-sided 2α mixture
    if units < MIN_UNITS or not np.isfinite(var):
        # A plug-in variance from a handful of units is no variance at all (one session, p̂ = 0):
        # report the numbers, judge nothing, and keep these looks out of the running state.
        half = float(stats.confidence_halfwidth(var, tau2, level)) if np.isfinite(var) else float("inf")
        low, high = _intersected(p_min, name, lift - half, lift + half, update=False)
        return MetricResult(
            name=name,
            role=role,
            baseline=mb,
            candidate=mc,
            lift=lift,
            ci_low=low if np.isfinite(low) else lift,
            ci_high=high if np.isfinite(high) else lift,
            p_value=p_min.get(name, 1.0),
            n_baseline=nb,
            n_candidate=nc,
            verdict="inconclusive",
            variance=method,
            design_effect=deff,
        )
    p_now = float(stats.msprt_p_value(lift, var, tau2))
    # Running minima per direction, so evidence of a gain is never read as evidence of a loss.
    up = p_min[f"{name}:+"] = min(p_min.get(f"{name}:+", 1.0), p_now if lift > 0 else 1.0)
    down = p_min[f"{name}:-"] = min(p_min.get(f"{name}:-", 1.0), p_now if lift < 0 else 1.0)
    p = p_min[name] = min(up, down)
    half = float(stats.confidence_halfwidth(var, tau2, level))
    # The intersection of every look's interval is itself an always-valid interval, and it
    # excludes 0 on one side exactly when some look's did, i.e. exactly when that
    # direction's running p reached the level: the reported interval agrees with the verdict.
    ci_low, ci_high = _intersected(p_min, name, lift - half, lift + half, update=True)
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
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p,
        n_baseline=nb,
        n_candidate=nc,
        verdict=verdict,
        variance=method,
        design_effect=deff,
    )


def _intersected(p_min: dict[str, float], name: str, low: float, high: float, update: bool) -> tuple[float, float]:
    """The running intersection of ``name``'s intervals with [low, high] (kept in
    ``p_min`` when ``update``). Intervals of looks far apart can be disjoint (with
    probability at most α when nothing drifts): the intersection is then the point
    between them, on the side of 0 both were."""
    lo = max(p_min.get(f"{name}:lo", -np.inf), low)
    hi = min(p_min.get(f"{name}:hi", np.inf), high)
    if update:
        p_min[f"{name}:lo"], p_min[f"{name}:hi"] = lo, hi
    if lo > hi:
        lo = hi = (lo + hi) / 2
    return lo, hi
