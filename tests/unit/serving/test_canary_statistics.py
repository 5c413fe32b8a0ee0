"""The canary's statistics validated by simulation over many seeded experiments
(vectorised with numpy): A/A false positives, power at the MDE, SRM detection, mean
sample at decision against the fixed-horizon sample, CUPED, the confidence sequence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.canary import CanaryConfig, horizon_n, stats

pytestmark = pytest.mark.timeout(120)

E = 1000  # experiments per scenario
K = 40  # looks per experiment (the controller evaluates after each signals window)
CONFIG = CanaryConfig()
P_CONTINUE, P_VIOLATION, P_IF, P_SLOW = 0.4, 0.1, 0.8, 0.05


def _tolerance(alpha: float, n: int) -> float:
    """Three binomial standard errors above alpha."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / n)


def _bernoulli_paths(
    rng: np.random.Generator, p_b: float, p_c: float, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.arange(1, K + 1) * batch
    cb = rng.binomial(batch, p_b, (E, K)).cumsum(1)
    cc = rng.binomial(batch, p_c, (E, K)).cumsum(1)
    return n, cb / n, cc / n


def _directional(delta: np.ndarray, p_now: np.ndarray, level: float) -> np.ndarray:
    """+1 / −1 from the look where the running minimum of p in that direction reaches
    ``level`` (as the analysis keeps it), 0 before; a loss wins over a gain."""
    up = np.minimum.accumulate(np.where(delta > 0, p_now, 1.0), axis=1) <= level
    down = np.minimum.accumulate(np.where(delta < 0, p_now, 1.0), axis=1) <= level
    return np.where(down, -1.0, np.where(up, 1.0, 0.0))


def _crossings(rng: np.random.Generator, lift: float, batch: int) -> dict[str, np.ndarray]:
    """First look index (or K) at which each test decides; sign of the estimate there."""
    out: dict[str, np.ndarray] = {}
    ga, gr = CONFIG.goal_alpha, CONFIG.guardrail_alpha
    goals = {
        "continue_rate": (P_CONTINUE, lift, CONFIG.mde["continue_rate"]),
        "breadth": (0.6, 0.0, CONFIG.mde["breadth"]),
    }
    for name, (p, d, mde) in goals.items():
        n, pb, pc = _bernoulli_paths(rng, p, p + d, batch)
        var = stats.bernoulli_diff_var(pb, n, pc, n)
        out[name] = _directional(pc - pb, stats.msprt_p_value(pc - pb, var, stats.tau2_for_mde(mde)), ga)
    # depth: mean of per-session turns (overdispersed counts), normal approximation per look
    sessions = np.arange(1, K + 1) * batch
    sb = rng.normal(3.0, math.sqrt(4.0 / batch), (E, K)).cumsum(1) / np.arange(1, K + 1)
    sc = rng.normal(3.0, math.sqrt(4.0 / batch), (E, K)).cumsum(1) / np.arange(1, K + 1)
    var = stats.mean_diff_var(4.0, sessions, 4.0, sessions)
    out["depth"] = _directional(sc - sb, stats.msprt_p_value(sc - sb, var, stats.tau2_for_mde(CONFIG.mde["depth"])), ga)
    guards = {
        "violation_rate": (P_VIOLATION, 1.0),
        "instruction_following_rate": (P_IF, -1.0),
        "latency_over_baseline_p95": (P_SLOW, 1.0),
    }
    for name, (p, harm_sign) in guards.items():
        n, pb, pc = _bernoulli_paths(rng, p, p, batch)
        var = stats.bernoulli_diff_var(pb, n, pc, n)
        # one-sided: the two-sided mixture at 2α, with the running minimum over harmful looks only
        harm = harm_sign * (pc - pb)
        out[name] = np.where(
            _directional(harm, stats.msprt_p_value(pc - pb, var, stats.tau2_for_mde(CONFIG.tolerance[name])), 2 * gr)
            > 0,
            -1.0,
            0.0,
        )
    return out


def _first_decision(signs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per experiment: the first look with any decision, and whether it was a promote (+1) or rollback (−1)."""
    any_rollback = np.zeros((E, K), bool)
    for _name, s in signs.items():
        any_rollback |= s < 0
    promote = signs["continue_rate"] > 0
    decided = any_rollback | promote
    first = np.where(decided.any(1), decided.argmax(1), K)
    kind = np.zeros(E)
    rows = np.arange(E)[first < K]
    kind[rows] = np.where(any_rollback[rows, first[first < K]], -1.0, 1.0)
    return first, kind


def test_a_a_false_positive_rate_is_within_alpha() -> None:
    rng = np.random.default_rng(20260101)
    batch = horizon_n(CONFIG, P_CONTINUE) // K
    _first, kind = _first_decision(_crossings(rng, 0.0, batch))
    wrong = float((kind != 0).mean())
    print(f"\nA/A: wrong promote or rollback in {wrong:.4f} of {E} experiments (alpha {CONFIG.alpha})")
    assert wrong <= _tolerance(CONFIG.alpha, E)


def test_power_at_the_minimum_detectable_effect_and_mean_sample() -> None:
    rng = np.random.default_rng(7)
    horizon = horizon_n(CONFIG, P_CONTINUE)
    batch = horizon // K
    mde = CONFIG.mde["continue_rate"]
    signs = _crossings(rng, mde, batch)
    first, kind = _first_decision(signs)
    power = float((kind > 0).mean())
    decided_at = (np.minimum(first, K - 1) + 1) * batch
    fixed = stats.fixed_horizon_n(mde, P_CONTINUE * (1 - P_CONTINUE), CONFIG.goal_alpha)
    print(
        f"\npower at MDE {mde}: {power:.3f}; mean sample at decision {decided_at.mean():.0f} per arm, "
        f"median {np.median(decided_at):.0f}; fixed-horizon sample {fixed} per arm; horizon {horizon}"
    )
    assert power >= 0.8
    assert float((kind < 0).mean()) <= _tolerance(CONFIG.alpha, E)  # a good candidate is rarely rolled back


def test_a_bad_candidate_is_caught_by_the_violation_guardrail() -> None:
    rng = np.random.default_rng(3)
    n, pb, pc = _bernoulli_paths(rng, P_VIOLATION, P_VIOLATION + CONFIG.tolerance["violation_rate"], 400)
    var = stats.bernoulli_diff_var(pb, n, pc, n)
    p_now = stats.msprt_p_value(pc - pb, var, stats.tau2_for_mde(CONFIG.tolerance["violation_rate"]))
    caught = (_directional(pc - pb, p_now, 2 * CONFIG.guardrail_alpha) > 0).any(1).mean()
    assert caught >= 0.8


@pytest.mark.parametrize("split,expect_fire", [((0.48, 0.52), True), ((0.5, 0.5), False)])
def test_srm_fires_on_48_52_at_the_sample_sizes_used(split: tuple[float, float], expect_fire: bool) -> None:
    rng = np.random.default_rng(11)
    users = 2 * horizon_n(CONFIG, P_CONTINUE)
    cand = rng.binomial(users, split[0], E)
    p = stats.srm_p_values(cand, users - cand, 0.5)
    rate = float((p < CONFIG.srm_alpha).mean())
    print(f"\nSRM at {users} users, split {split}: fires in {rate:.3f}")
    if expect_fire:
        assert rate >= 0.99
    else:
        assert rate <= _tolerance(CONFIG.srm_alpha, E)
    assert stats.srm_p_value([480, 520], [1, 1]) == pytest.approx(math.erfc(math.sqrt(1.6 / 2)))


def test_srm_at_an_unequal_share() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    ok = rng.binomial(n, 0.05, E)
    shifted = rng.binomial(n, 0.05 * 0.85, E)
    assert (stats.srm_p_values(ok, n - ok, 0.05) < 0.001).mean() <= _tolerance(0.001, E)
    assert (stats.srm_p_values(shifted, n - shifted, 0.05) < 0.001).mean() >= 0.9


def test_confidence_sequence_covers_the_true_lift_at_every_look() -> None:
    rng = np.random.default_rng(13)
    lift = 0.02
    n, pb, pc = _bernoulli_paths(rng, 0.4, 0.4 + lift, 300)
    var = stats.bernoulli_diff_var(pb, n, pc, n)
    half = stats.confidence_halfwidth(var, stats.tau2_for_mde(0.03), 0.05)
    covered_always = (np.abs((pc - pb) - lift) <= half).all(1).mean()
    assert covered_always >= 0.95


def test_cuped_is_unbiased_and_reduces_variance() -> None:
    rng = np.random.default_rng(17)
    n, lift, rho = 2000, 0.1, 0.7
    estimates, plain, variances = [], [], []
    for _ in range(300):
        xb, xc = rng.normal(0, 1, n), rng.normal(0, 1, n)
        yb = rho * xb + math.sqrt(1 - rho**2) * rng.normal(0, 1, n)
        yc = rho * xc + math.sqrt(1 - rho**2) * rng.normal(0, 1, n) + lift
        mb = stats.Moments(n, yb.sum(), (yb**2).sum(), xb.sum(), (xb**2).sum(), (xb * yb).sum())
        mc = stats.Moments(n, yc.sum(), (yc**2).sum(), xc.sum(), (xc**2).sum(), (xc * yc).sum())
        delta, var, _theta = stats.cuped(mb, mc)
        estimates.append(delta)
        variances.append(var)
        plain.append(yc.mean() - yb.mean())
    assert abs(np.mean(estimates) - lift) < 3 * np.std(estimates) / math.sqrt(300)
    assert np.var(estimates) < 0.6 * np.var(plain)  # theory: 1 − ρ² = 0.51
    assert np.mean(variances) == pytest.approx(np.var(estimates), rel=0.2)


def test_delta_method_variance_matches_simulation() -> None:
    rng = np.random.default_rng(19)
    ratios, predicted = [], []
    for _ in range(400):
        d = rng.poisson(3, 1000) + 1
        mm = rng.binomial(d, 0.6)
        r, v = stats.ratio_var(1000, mm.sum(), (mm**2).sum(), d.sum(), (d**2).sum(), (mm * d).sum())
        ratios.append(r)
        predicted.append(v)
    assert np.mean(predicted) == pytest.approx(np.var(ratios), rel=0.2)
