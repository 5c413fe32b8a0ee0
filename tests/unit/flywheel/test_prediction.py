"""Offline predicted vs online observed lift: Spearman rank correlation, mean absolute
error, and which generations count."""

from __future__ import annotations

import random

import pytest

from flywheel.demo.prediction import PredictionCheck, PredictionPoint, ranks, spearman
from flywheel.demo.report import GenerationResult, OfflineMetrics, OnlineMetrics, prediction_points


def test_ranks_share_ties() -> None:
    assert ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_without_ties_is_the_rank_difference_formula_over_many_seeds() -> None:
    # 500 random samples of 2-12 distinct pairs: rho = 1 - 6 sum(d^2) / (n (n^2 - 1)).
    for seed in range(500):
        rng = random.Random(seed)
        n = rng.randint(2, 12)
        xs = rng.sample(range(-50, 50), n)
        ys = [x + rng.gauss(0, 30) for x in xs]
        d2 = sum((a - b) ** 2 for a, b in zip(ranks(xs), ranks(ys), strict=True))
        assert spearman(xs, ys) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)), abs=1e-12), seed


def test_spearman_with_ties_is_pearson_of_mean_ranks() -> None:
    # ranks x = [1, 2.5, 2.5, 4], ranks y = [1, 3, 2, 4]: 4.5 / sqrt(4.5 * 5)
    assert spearman([0.01, 0.02, 0.02, 0.03], [0.0, 0.2, 0.1, 0.3]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([0.02, 0.02, 0.02], [0.1, 0.2, 0.3]) is None  # no spread on one side: undefined


def test_perfect_and_reversed_order_and_too_few() -> None:
    assert spearman([0.01, 0.02, 0.05], [0.0, 0.1, 0.2]) == pytest.approx(1.0)
    assert spearman([0.01, 0.02, 0.05], [0.2, 0.1, 0.0]) == pytest.approx(-1.0)
    assert spearman([0.01], [0.02]) is None
    with pytest.raises(ValueError, match="pairs"):
        spearman([0.1, 0.2], [0.1])


def _point(generation: int, predicted: float, observed: float) -> PredictionPoint:
    return PredictionPoint(
        generation=generation, version=f"v{generation}", decision="promoted", predicted=predicted, observed=observed
    )


def test_check_needs_two_generations_with_both() -> None:
    assert PredictionCheck.of([]) == PredictionCheck(n=0)
    one = PredictionCheck.of([_point(1, 0.02, 0.05)])
    assert one.n == 1 and one.spearman is None and one.mae is None and len(one.points) == 1
    three = PredictionCheck.of([_point(1, 0.02, 0.05), _point(2, 0.01, -0.01), _point(3, 0.04, 0.08)])
    assert three.n == 3 and three.spearman == pytest.approx(1.0)
    assert three.mae == pytest.approx((0.03 + 0.02 + 0.04) / 3)


def test_points_are_the_generations_with_a_prediction_and_a_canary_estimate() -> None:
    def gen(
        n: int, predicted: float | None, observed: float | None, decision: str, replies: int = 300
    ) -> GenerationResult:
        return GenerationResult(
            generation=n,
            version=f"v{n}",
            parent="base",
            offline=OfflineMetrics(
                instruction_following=0.8,
                violation_rate=0.05,
                rm_win_rate=None,
                rm_predicted_lift=predicted,
                rm_predicted_lift_ci_low=None if predicted is None else predicted - 0.01,
                rm_predicted_lift_ci_high=None if predicted is None else predicted + 0.01,
            ),
            decision=decision,  # type: ignore[arg-type]
            online=OnlineMetrics(
                continue_rate_lift=observed,
                ci_low=observed,
                ci_high=observed,
                n_baseline=replies,
                n_candidate=replies,
            ),
        )

    gens = (
        gen(1, None, 0.09, "promoted"),  # no engagement model yet: nothing predicted
        gen(2, 0.03, 0.02, "promoted"),
        gen(3, 0.02, None, "rejected"),  # the gate stopped it: no canary
        gen(4, -0.01, 0.01, "rolled_back"),
        gen(5, 0.015, 0.0, "undecided", replies=0),  # the canary had just opened: no replies compared yet
        gen(6, 0.01, 0.04, "undecided", replies=80),  # still in canary: its latest estimate counts
    )
    points = prediction_points(gens)
    assert [p.generation for p in points] == [2, 4, 6]
    assert points[0].predicted_ci_low == pytest.approx(0.02) and points[1].decision == "rolled_back"
