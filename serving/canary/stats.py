"""Statistics of the canary, as pure numpy functions (vectorised so the simulation tests
can run thousands of experiments at once). Formulas: docs/serving.md § Canary statistics.

- mSPRT with a normal mixture N(θ₀, τ²) on the effect: always-valid, so the canary may
  look after every window without inflating the false-positive rate.
- The matching confidence sequence is the inversion of the same test, so an effect is
  "significant" exactly when its interval excludes θ₀.
- Per-reply rates with sessions as the units (delta method on per-session sums: replies
  of one conversation are not independent), with or without CUPED on a pre-period
  covariate; CUPED for unit-level means.
- Sample-ratio mismatch: a beta-binomial mixture SPRT (always valid, so looking after every
  window does not inflate its false alarms) and the χ² test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Z = NormalDist()


def msprt_log_lambda(delta: ArrayLike, var: ArrayLike, tau2: float, theta0: float = 0.0) -> NDArray[np.float64]:
    """log Λₙ = ½ log(V/(V+τ²)) + τ²(Δ̂−θ₀)² / (2V(V+τ²)). ``var`` = V, the variance of Δ̂."""
    d = np.asarray(delta, dtype=float) - theta0
    v = np.maximum(np.asarray(var, dtype=float), 1e-300)
    return 0.5 * np.log(v / (v + tau2)) + tau2 * d * d / (2.0 * v * (v + tau2))


def msprt_p_value(delta: ArrayLike, var: ArrayLike, tau2: float, theta0: float = 0.0) -> NDArray[np.float64]:
    """1/Λₙ capped at 1. The always-valid p-value is the running minimum of this over looks."""
    return np.minimum(1.0, np.exp(-msprt_log_lambda(delta, var, tau2, theta0)))


def confidence_halfwidth(var: ArrayLike, tau2: float, alpha: float) -> NDArray[np.float64]:
    """Half-width of the always-valid (1−α) interval {θ : Λₙ(θ) < 1/α} around Δ̂:

    √( V(V+τ²)/τ² · (2 ln(1/α) + ln((V+τ²)/V)) ).
    """
    v = np.maximum(np.asarray(var, dtype=float), 1e-300)
    return np.sqrt(v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + np.log((v + tau2) / v)))


def bernoulli_diff_var(p_b: ArrayLike, n_b: ArrayLike, p_c: ArrayLike, n_c: ArrayLike) -> NDArray[np.float64]:
    """V = p̂_c(1−p̂_c)/n_c + p̂_b(1−p̂_b)/n_b, with empty arms giving infinite variance."""
    p_b, n_b, p_c, n_c = (np.asarray(x, dtype=float) for x in (p_b, n_b, p_c, n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            (n_b > 0) & (n_c > 0), p_b * (1 - p_b) / np.maximum(n_b, 1) + p_c * (1 - p_c) / np.maximum(n_c, 1), np.inf
        )


def mean_diff_var(var_b: ArrayLike, n_b: ArrayLike, var_c: ArrayLike, n_c: ArrayLike) -> NDArray[np.float64]:
    var_b, n_b, var_c, n_c = (np.asarray(x, dtype=float) for x in (var_b, n_b, var_c, n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n_b > 0) & (n_c > 0), var_b / np.maximum(n_b, 1) + var_c / np.maximum(n_c, 1), np.inf)


@cache  # every look asks again for the same few settings
def tau2_for_mde(mde: float, alpha: float | None = None, power: float = 0.8) -> float:
    """Mixture variance of the mSPRT for a planned minimum detectable effect.

    Without ``alpha``: τ = MDE, the prior's mass on effects of the size we care about.
    With it: the τ² whose boundary is lowest at the look where a fixed-horizon test of
    level ``alpha`` would detect the MDE with ``power``: there V* = (MDE/(z₁₋α/₂ + z_power))²,
    and the boundary Δ̂² ≥ V(1 + V/τ²)(2 ln(1/α) + ln(1 + τ²/V)) is lowest at τ² = t·V*
    with t = 2 ln(1/α) + ln(1 + t). For the levels used here that lands within a few per
    cent of MDE² (t ≈ 10.5 against (z + z)² ≈ 10.5 at α = 1/60), and the optimum is flat.
    """
    if alpha is None:
        return mde * mde
    v_star = (mde / (_Z.inv_cdf(1 - alpha / 2) + _Z.inv_cdf(power))) ** 2
    t = 2 * math.log(1 / alpha)
    for _ in range(50):  # fixed point of t = 2 ln(1/α) + ln(1 + t): contracts fast
        t = 2 * math.log(1 / alpha) + math.log1p(t)
    return t * v_star


def fixed_horizon_n(
    mde: float, unit_var: float, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Per-arm sample of a classical fixed-horizon z-test for the same MDE (equal arms)."""
    z_a = _Z.inv_cdf(1 - alpha / 2) if two_sided else _Z.inv_cdf(1 - alpha)
    z_b = _Z.inv_cdf(power)
    return math.ceil(2 * unit_var * (z_a + z_b) ** 2 / (mde * mde))


def srm_p_value(observed: ArrayLike, weights: ArrayLike) -> float:
    """χ² goodness of fit of arm counts against expected weights (k−1 df; k = 2 here)."""
    obs = np.asarray(observed, dtype=float)
    w = np.asarray(weights, dtype=float)
    total = obs.sum()
    if total <= 0 or np.any(w <= 0):
        return 1.0
    expected = w / w.sum() * total
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    k = len(obs)
    if k == 2:
        return math.erfc(math.sqrt(chi2 / 2.0))
    return _chi2_sf(chi2, k - 1)


def srm_p_values(observed_c: ArrayLike, observed_b: ArrayLike, share_c: float) -> NDArray[np.float64]:
    """Vectorised two-arm SRM p-values (df = 1)."""
    c = np.asarray(observed_c, dtype=float)
    b = np.asarray(observed_b, dtype=float)
    n = c + b
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(
            n > 0, (c - share_c * n) ** 2 / (share_c * n) + (b - (1 - share_c) * n) ** 2 / ((1 - share_c) * n), 0.0
        )
    return np.asarray(np.vectorize(math.erfc)(np.sqrt(chi2 / 2.0)), dtype=float)


def srm_log_bayes_factor(
    observed_c: ArrayLike, observed_b: ArrayLike, share_c: float, prior_units: float
) -> NDArray[np.float64]:
    """log of the beta-binomial mixture likelihood ratio for two-arm sample-ratio mismatch.

    H₀: each unit is a candidate unit with probability ``share_c``. The alternative mixes
    over the candidate's true share θ ~ Beta(κ·share_c, κ·(1 − share_c)), κ = ``prior_units``:
    Λ = B(c + κq, b + κ(1−q)) / B(κq, κ(1−q)) / (q^c (1−q)^b). Under H₀, Λ is a martingale
    with mean 1, so P(Λ ever ≥ 1/α) ≤ α (Ville): 1/max Λ is an always-valid p-value.
    A larger κ concentrates the prior near ``share_c``: more sensitive to small
    mismatches, which show only after many units.
    """
    c = np.asarray(observed_c, dtype=float)
    b = np.asarray(observed_b, dtype=float)
    q = share_c
    a0, b0 = prior_units * q, prior_units * (1 - q)
    lgamma = np.vectorize(math.lgamma, otypes=[float])
    log_beta_post = lgamma(c + a0) + lgamma(b + b0) - lgamma(c + b + a0 + b0)
    log_beta_prior = math.lgamma(a0) + math.lgamma(b0) - math.lgamma(a0 + b0)
    return np.asarray(log_beta_post - log_beta_prior - c * math.log(q) - b * math.log(1 - q), dtype=float)


def srm_sequential_p_value(
    observed_c: ArrayLike, observed_b: ArrayLike, share_c: float, prior_units: float
) -> NDArray[np.float64]:
    """1/Λ capped at 1 (see :func:`srm_log_bayes_factor`); the running minimum over
    looks is the always-valid p-value."""
    return np.minimum(1.0, np.exp(-srm_log_bayes_factor(observed_c, observed_b, share_c, prior_units)))


def _chi2_sf(x: float, df: int) -> float:
    """Survival function of χ² via the regularised upper incomplete gamma (series/continued fraction)."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    if z < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(500):
            n += 1
            term *= z / n
            total += term
        return max(0.0, 1.0 - total * math.exp(-z + a * math.log(z) - math.lgamma(a)))
    b, c, d = z + 1 - a, 1e300, 1 / (z + 1 - a)
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / d if abs(d) > 1e-300 else 1e300
        c = b + an / c if abs(c) > 1e-300 else b
        h *= d * c
    return h * math.exp(-z + a * math.log(z) - math.lgamma(a))


@dataclass(frozen=True)
class Moments:
    """Per-unit sums of one arm: n, ΣY, ΣY², and optionally ΣX, ΣX², ΣXY for a covariate."""

    n: float
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    @property
    def mean(self) -> float:
        return self.sum_y / self.n if self.n else 0.0

    @property
    def var(self) -> float:
        if self.n < 2:
            return 0.0
        return max(0.0, self.sum_y2 / self.n - self.mean**2)


def cuped(baseline: Moments, candidate: Moments) -> tuple[float, float, float]:
    """CUPED-adjusted (Δ̂, V, θ): θ = cov(Y,X)/var(X) pooled over both arms; adjusted
    means Ȳ − θX̄; per-arm variance (σ²_Y + θ²σ²_X − 2θσ_XY)/N, summed over the arms."""
    n = baseline.n + candidate.n
    mx = (baseline.sum_x + candidate.sum_x) / n
    my = (baseline.sum_y + candidate.sum_y) / n
    var_x = (baseline.sum_x2 + candidate.sum_x2) / n - mx * mx
    cov = (baseline.sum_xy + candidate.sum_xy) / n - mx * my
    theta = cov / var_x if var_x > 0 else 0.0

    def arm(a: Moments) -> tuple[float, float]:
        ax, ay = a.sum_x / a.n, a.sum_y / a.n
        sx = a.sum_x2 / a.n - ax * ax
        sy = a.sum_y2 / a.n - ay * ay
        sxy = a.sum_xy / a.n - ax * ay
        return ay - theta * ax, max(0.0, sy + theta * theta * sx - 2 * theta * sxy) / a.n

    mb, vb = arm(baseline)
    mc, vc = arm(candidate)
    return mc - mb, vb + vc, theta


def ratio_var(n: float, sum_m: float, sum_m2: float, sum_d: float, sum_d2: float, sum_md: float) -> tuple[float, float]:
    """Delta method for a ratio metric R̂ = ΣM/ΣD with users as units: (R̂, Var(R̂))."""
    mu_m, mu_d = sum_m / n, sum_d / n
    s_m = sum_m2 / n - mu_m**2
    s_d = sum_d2 / n - mu_d**2
    s_md = sum_md / n - mu_m * mu_d
    r = mu_m / mu_d
    unit = (s_m - 2 * r * s_md + r * r * s_d) / (mu_d * mu_d)
    return r, max(0.0, unit) / n


@dataclass(frozen=True)
class SessionSums:
    """One arm's per-session sums for a per-reply rate m/n (sessions the units): Σn, Σn²,
    Σm, Σm², Σm·n, and for CUPED the sums of a, each session's sum of its replies'
    covariates: Σa, Σa², Σa·n, Σa·m. Floats, or numpy arrays of many experiments (every
    function below broadcasts)."""

    n: Any
    n2: Any
    m: Any
    m2: Any
    mn: Any
    a: Any = 0.0
    a2: Any = 0.0
    an: Any = 0.0
    am: Any = 0.0

    def residual_sq(self) -> Any:
        """Σ (m − R·n)² with R = Σm/Σn: the delta method's sum over units."""
        r = self.m / self.n
        return np.maximum(0.0, self.m2 - 2 * r * self.mn + r * r * self.n2)

    def covariate_residual_sq(self) -> Any:
        """Σ (a − X·n)² with X = Σa/Σn."""
        x = self.a / self.n
        return np.maximum(0.0, self.a2 - 2 * x * self.an + x * x * self.n2)

    def cross_residual(self) -> Any:
        """Σ (m − R·n)(a − X·n)."""
        r, x = self.m / self.n, self.a / self.n
        return self.am - x * self.mn - r * self.an + r * x * self.n2


def design_effect(sums: SessionSums, per_reply_var: Any = None) -> Any:
    """Variance per reply with sessions as units over what independent replies give,
    R(1 − R), on the sessions of ``sums`` (R = Σm/Σn there). ``per_reply_var`` replaces
    Σ(m − Rn)²/Σn (e.g. CUPED's). 1 when those sessions hold no hit or only hits: they
    then say nothing about how hits cluster (a rare event not yet in an ended session)."""
    r = sums.m / sums.n
    per_reply = sums.residual_sq() / sums.n if per_reply_var is None else per_reply_var
    informative = (r > 0) & (r < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(informative, per_reply / np.where(informative, r * (1 - r), 1.0), 1.0)


def session_rate_var(sums: SessionSums, hits: Any, replies: Any) -> Any:
    """Variance of the per-reply rate hits/replies, sessions the units (delta method).

    The rate counts the replies decided in the windows compared; ``sums`` the sessions
    that ended in them, a sample of the same traffic (young sessions have not ended yet).
    So the sessions give the design effect, and the replies the rate: D·p(1−p)/n. With
    the same replies on both sides this is Σ(m − Rn)²/(Σn)², what :func:`ratio_var` gives.
    """
    p = hits / replies
    return design_effect(sums) * p * (1 - p) / replies


def cuped_rate_diff(
    rates: tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]],
    sums: tuple[SessionSums, SessionSums],
) -> tuple[Any, Any, Any, Any, Any]:
    """CUPED on a per-reply rate with a per-reply covariate, sessions the units.

    ``rates`` are (Σm, Σa, n) of each arm's replies (baseline first), ``sums`` the arms'
    per-session sums. The adjusted rate of an arm is R − θ(X − X̄), X its replies' mean
    covariate and X̄ both arms'; θ = Σ(m − Rn)(a − Xn) / Σ(a − Xn)², pooled over the two
    arms' sessions. Each arm's variance is its design effect (CUPED's residual per reply
    over R(1 − R) of its sessions) times p(1 − p)/n of its replies, as in
    :func:`session_rate_var`. Returns (adjusted baseline, adjusted candidate, variance of
    their difference, θ, variance of the unadjusted difference).
    """
    theta_num = sums[0].cross_residual() + sums[1].cross_residual()
    theta_den = sums[0].covariate_residual_sq() + sums[1].covariate_residual_sq()
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(theta_den > 0, theta_num / np.where(theta_den > 0, theta_den, 1.0), 0.0)
    x_bar = (rates[0][1] + rates[1][1]) / (rates[0][2] + rates[1][2])
    adjusted = []
    var: Any = 0.0
    plain: Any = 0.0
    for (m, a, n), arm in zip(rates, sums, strict=True):
        adjusted.append(m / n - theta * (a / n - x_bar))
        per_reply = (
            arm.residual_sq() - 2 * theta * arm.cross_residual() + theta * theta * arm.covariate_residual_sq()
        ) / arm.n
        p = m / n
        var = var + design_effect(arm, np.maximum(0.0, per_reply)) * p * (1 - p) / n
        plain = plain + design_effect(arm) * p * (1 - p) / n
    return adjusted[0], adjusted[1], var, theta, plain
