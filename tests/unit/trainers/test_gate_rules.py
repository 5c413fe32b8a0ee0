"""The gate's rules on given numbers: guardrail regressions reject (on paired intervals when
there are per-prompt rates), a high win rate is flagged, and with a style drift rejects."""

from __future__ import annotations

import pytest

from trainers.evaluate import GateConfig, OfflineGate, PolicyStats


def _stats(if_rate: float, viol: float, rewards: tuple[float, ...] = (), words: float = 20.0) -> PolicyStats:
    return PolicyStats(if_rate, viol, words, 0.5, 0.5, sum(rewards) / len(rewards) if rewards else None, rewards)


def test_no_baseline_passes_with_absolute_numbers() -> None:
    report = OfflineGate(GateConfig(prompts_per_character=2, samples_per_prompt=1)).judge(
        _stats(0.55, 0.25), None, None
    )
    assert report.passed and report.win_rate is None and report.prompts == 12


def test_guardrail_regressions_beyond_tolerance_reject() -> None:
    gate = OfflineGate(GateConfig(prompts_per_character=2, if_tolerance=0.03, violation_tolerance=0.03))
    base = _stats(0.70, 0.10)
    assert gate.judge(_stats(0.68, 0.12), base, "v1").passed  # within tolerance
    worse_if = gate.judge(_stats(0.60, 0.10), base, "v1")
    assert not worse_if.passed and "instruction following fell" in worse_if.reasons[0]
    worse_viol = gate.judge(_stats(0.80, 0.20), base, "v1")
    assert not worse_viol.passed and "violation rate rose" in worse_viol.reasons[0]
    assert worse_viol.baseline_version == "v1" and worse_viol.baseline_violation_rate == 0.10


def test_win_rate_above_ceiling_is_flagged_not_rejected_by_default() -> None:
    base = _stats(0.70, 0.10, rewards=(0.0,) * 10, words=20.0)
    cand = _stats(0.72, 0.10, rewards=(1.0,) * 8 + (-1.0,) * 2, words=30.0)  # style within its bounds
    report = OfflineGate(GateConfig(prompts_per_character=2)).judge(cand, base, "v1")
    assert report.win_rate == 0.8 and report.passed and "likely over-optimising" in report.flags[0]
    assert report.style_drift["mean_words"] == 10.0
    strict = OfflineGate(GateConfig(prompts_per_character=2, reject_above_ceiling=True)).judge(cand, base, "v1")
    assert not strict.passed


def test_the_reward_models_predicted_lift_is_paired_and_has_an_interval() -> None:
    from trainers.evaluate.gate import predicted_lift

    # Candidate replies the engagement model scores at logit 1 vs 0 for the baseline's:
    # sigmoid(1) - sigmoid(0) = 0.2311 on every pair, so the interval is that point.
    mean, low, high = predicted_lift([1.0] * 8, [0.0] * 8)
    assert mean == low == high == pytest.approx(0.2311, abs=1e-4)
    mean, low, high = predicted_lift([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    assert low < mean < high and low < 0 < high


def _paired(following: list[float], violating: list[float] | None = None, **style: float) -> PolicyStats:
    n = len(following)
    violating = violating if violating is not None else [0.0] * n
    return PolicyStats(
        sum(following) / n,
        sum(violating) / n,
        style.get("words", 20.0),
        style.get("emoji", 0.2),
        style.get("question", 0.3),
        None,
        style.get("rewards", ()),  # type: ignore[arg-type]
        tuple(following),
        tuple(violating),
    )


def test_a_noisy_drop_passes_and_a_confident_one_rejects_with_its_interval() -> None:
    gate = OfflineGate(GateConfig(prompts_per_character=2, samples_per_prompt=2))
    base = _paired([1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5])
    # 4 pp lower on the point estimate (the kind of gap 72 sampled replies show between
    # two measurements of one model), but prompt by prompt it goes both ways.
    noisy = _paired([0.5, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 1.0])
    report = gate.judge(noisy, base, "v1")
    assert report.passed, report.reasons
    low, high = report.instruction_following_diff_ci_low, report.instruction_following_diff_ci_high
    assert low is not None and high is not None and low < 0 < high
    worse = _paired([0.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.5, 0.5, 0.0])
    rejected = gate.judge(worse, base, "v1")
    assert not rejected.passed and "over 12 prompts" in rejected.reasons[0]
    assert (
        rejected.instruction_following_diff_ci_high is not None and rejected.instruction_following_diff_ci_high < -0.03
    )


def test_tolerances_are_anchored_to_the_base_model_too() -> None:
    gate = OfflineGate(GateConfig(prompts_per_character=2, samples_per_prompt=2, if_tolerance=0.5))
    root = _paired([1.0] * 12)
    baseline = _paired([0.5] * 6 + [1.0] * 6)  # already below the base
    cand = _paired([0.5] * 12)  # within the wide tolerance of the baseline, confidently below the base
    alone = gate.judge(cand, baseline, "v2")
    assert alone.passed
    anchored = gate.judge(cand, baseline, "v2", ("base", root))
    assert not anchored.passed and "the base model base" in anchored.reasons[0]
    assert anchored.anchor_version == "base" and anchored.anchor_instruction_following == 1.0


def test_style_drift_with_a_reward_model_score_jump_is_rejected_as_reward_hacking() -> None:
    gate = OfflineGate(GateConfig(prompts_per_character=2, samples_per_prompt=2))
    following = [1.0] * 12
    base = _paired(following, emoji=0.1, rewards=(0.0,) * 24)
    # Emoji on most replies and a reward model that loves them.
    hacked = _paired(following, emoji=0.8, rewards=(2.0,) * 24)
    report = gate.judge(hacked, base, "v1")
    assert not report.passed
    (reason,) = report.reasons
    assert "emoji_rate +0.700 (bound 0.250)" in reason and "likely reward hacking" in reason
    # The same drift without the jump is only flagged.
    drifted = gate.judge(_paired(following, emoji=0.8, rewards=(0.0,) * 24), base, "v1")
    assert drifted.passed and any("style drift emoji_rate" in f for f in drifted.flags)
