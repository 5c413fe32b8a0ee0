"""The gate's rules on given numbers: guardrail regressions reject, a high win rate is flagged."""

from __future__ import annotations

import pytest

from trainers.evaluate import GateSettings, OfflineGate, PolicyStats


def _stats(if_rate: float, viol: float, rewards: tuple[float, ...] = (), words: float = 20.0) -> PolicyStats:
    return PolicyStats(if_rate, viol, words, 0.5, 0.5, sum(rewards) / len(rewards) if rewards else None, rewards)


def test_no_baseline_passes_with_absolute_numbers() -> None:
    report = OfflineGate(GateSettings(prompts_per_character=2)).judge(_stats(0.55, 0.25), None, None)
    assert report.passed and report.win_rate is None and report.prompts == 12


def test_guardrail_regressions_beyond_tolerance_reject() -> None:
    gate = OfflineGate(GateSettings(prompts_per_character=2, if_tolerance=0.03, violation_tolerance=0.03))
    base = _stats(0.70, 0.10)
    assert gate.judge(_stats(0.68, 0.12), base, "v1").passed  # within tolerance
    worse_if = gate.judge(_stats(0.60, 0.10), base, "v1")
    assert not worse_if.passed and "instruction following fell" in worse_if.reasons[0]
    worse_viol = gate.judge(_stats(0.80, 0.20), base, "v1")
    assert not worse_viol.passed and "violation rate rose" in worse_viol.reasons[0]
    assert worse_viol.baseline_version == "v1" and worse_viol.baseline_violation_rate == 0.10


def test_win_rate_above_ceiling_is_flagged_not_rejected_by_default() -> None:
    base = _stats(0.70, 0.10, rewards=(0.0,) * 10, words=20.0)
    cand = _stats(0.72, 0.10, rewards=(1.0,) * 8 + (-1.0,) * 2, words=35.0)
    report = OfflineGate(GateSettings(prompts_per_character=2)).judge(cand, base, "v1")
    assert report.win_rate == 0.8 and report.passed and "likely over-optimising" in report.flags[0]
    assert report.style_drift["mean_words"] == 15.0
    strict = OfflineGate(GateSettings(prompts_per_character=2, reject_above_ceiling=True)).judge(cand, base, "v1")
    assert not strict.passed


def test_the_reward_models_predicted_lift_is_paired_and_has_an_interval() -> None:
    from trainers.evaluate.gate import predicted_lift

    # Candidate replies the engagement model scores at logit 1 vs 0 for the baseline's:
    # sigmoid(1) - sigmoid(0) = 0.2311 on every pair, so the interval is that point.
    mean, low, high = predicted_lift([1.0] * 8, [0.0] * 8)
    assert mean == low == high == pytest.approx(0.2311, abs=1e-4)
    mean, low, high = predicted_lift([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    assert low < mean < high and low < 0 < high
