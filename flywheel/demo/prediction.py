"""Did the offline number predict the online result? The engagement model's predicted
continue-rate lift of each candidate (offline gate, held-out prompts) against the lift the
canary measured on live traffic, across generations: Spearman rank correlation and mean
absolute error, over the generations that have both."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from trainers.reward.held_out import ranks


class PredictionPoint(BaseModel):
    """One generation: predicted and observed continue-rate lift (absolute, candidate − baseline)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int
    version: str
    decision: str
    predicted: float = Field(description="Engagement model's predicted lift (offline gate, held-out prompts).")
    predicted_ci_low: float | None = Field(default=None, description="95 % interval, paired by prompt and sample.")
    predicted_ci_high: float | None = None
    observed: float = Field(description="Continue-rate lift the canary measured (its last decision's estimate).")
    observed_ci_low: float | None = Field(default=None, description="The canary's always-valid interval.")
    observed_ci_high: float | None = None


class PredictionCheck(BaseModel):
    """How well offline predicted online, over ``n`` generations with both numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = 0
    spearman: float | None = Field(
        default=None,
        description="Rank correlation of predicted and observed lift; None below 2 generations "
        "or when either side has a single value.",
    )
    mae: float | None = Field(
        default=None, description="Mean |predicted − observed| (continue-rate points); None below 2 generations."
    )
    points: tuple[PredictionPoint, ...] = ()

    @classmethod
    def of(cls, points: Sequence[PredictionPoint]) -> PredictionCheck:
        if len(points) < 2:
            return cls(n=len(points), points=tuple(points))
        predicted = [p.predicted for p in points]
        observed = [p.observed for p in points]
        return cls(
            n=len(points),
            spearman=spearman(predicted, observed),
            mae=statistics.fmean(abs(a - b) for a, b in zip(predicted, observed, strict=True)),
            points=tuple(points),
        )


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson correlation of tie-averaged ranks); None when
    fewer than two pairs or when either side has no spread."""
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs pairs: {len(xs)} x values, {len(ys)} y values")
    if len(xs) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
