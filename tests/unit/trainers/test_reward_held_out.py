"""The engagement model's held-out check: AUC and calibration computed right, split stable."""

from __future__ import annotations

import random

import pytest

from trainers.reward.held_out import calibration_error, is_held_out, roc_auc


def test_auc_counts_ordered_pairs_and_ties_half() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert roc_auc([0.2, 0.3], [1, 1]) is None


def test_auc_matches_the_pairwise_definition_on_random_data() -> None:
    rng = random.Random(5)
    scores = [round(rng.random(), 2) for _ in range(300)]  # rounded: many ties
    labels = [1.0 if rng.random() < s else 0.0 for s in scores]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(brute)


def test_calibration_error_is_zero_when_predictions_match_rates_and_large_when_not() -> None:
    assert calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert calibration_error([0.9] * 10, [0] * 10) == pytest.approx(0.9)


def test_held_out_split_is_by_conversation_and_near_its_share() -> None:
    ids = [f"conv-{i}" for i in range(5000)]
    held = [c for c in ids if is_held_out(c, 0.2)]
    assert held == [c for c in ids if is_held_out(c, 0.2)]  # deterministic
    assert 0.17 < len(held) / len(ids) < 0.23  # 5,000 draws: the share is 0.2 ± 0.017 (3 sd)
