"""Statistics of the canary, as pure numpy functions (vectorised so the simulation tests
can run thousands of experiments at once). Formulas: docs/serving.md § Canary statistics.

- mSPRT with a normal mixture N(θ₀, τ²) on the effect: always-valid, so the canary may
  look after every window without inflating the false-positive rate.
- The matching confidence sequence is the inversion of the same test, so an effect is
  "significant" exactly when its interval excludes θ₀.
- CUPED variance reduction with a pre-period covariate; delta method for ratio metrics;
  χ² sample-ratio-mismatch test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

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


def tau2_for_mde(mde: float) -> float:
    """Mixture variance for a planned minimum detectable effect: τ = MDE puts the prior's
    mass on effects of the size we care about (checked by simulation in the tests)."""
    return mde * mde


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
