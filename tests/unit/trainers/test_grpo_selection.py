"""GRPO's prompt choice: by how much sampled replies differ in reward; groups without
signal are skipped and counted (pure logic, no model)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainers.grpo import GrpoTrainerConfig
from trainers.grpo.selection import choose_prompts, reward_spread, zero_advantage_groups


def test_spread_is_the_population_standard_deviation() -> None:
    assert reward_spread([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert reward_spread([0.0, 1.0]) == pytest.approx(0.5)
    assert reward_spread([0.7]) == 0.0 and reward_spread([]) == 0.0


def test_widest_spread_first_and_zero_spread_groups_skipped() -> None:
    spreads = [0.0, 0.3, 0.02, 0.5, 0.0, 0.3]
    keep, skipped = choose_prompts(spreads, fraction=0.5, min_spread=0.05)
    assert keep == [3, 1, 5]  # ties keep the recency order
    assert skipped == 3  # 0.0, 0.02 and 0.0 would give (almost) zero advantage


def test_never_keeps_a_group_without_signal_to_fill_the_fraction() -> None:
    keep, skipped = choose_prompts([0.0, 0.0, 0.4, 0.0], fraction=1.0, min_spread=0.0)
    assert keep == [2] and skipped == 3
    assert choose_prompts([0.0, 0.0], fraction=0.5, min_spread=0.0) == ([], 2)
    assert choose_prompts([], fraction=0.5, min_spread=0.0) == ([], 0)


def test_at_least_one_prompt_when_any_has_signal() -> None:
    assert choose_prompts([0.1, 0.2, 0.3], fraction=0.1, min_spread=0.0) == ([2], 0)


def test_zero_advantage_groups_from_trl_logs() -> None:
    history = [
        {"loss": 0.1, "frac_reward_zero_std": 0.25, "reward": 0.4},
        {"loss": 0.1, "frac_reward_zero_std": 0.5, "reward": 0.5},
        {"train_runtime": 3.0},
    ]
    assert zero_advantage_groups(history, groups_per_step=4) == 3  # 1 + 2 of 4 groups per step


def test_defaults_keep_a_kl_penalty_and_refuse_a_one_sample_spread() -> None:
    settings = GrpoTrainerConfig()
    assert settings.beta > 0 and settings.select_candidates >= 2 and settings.rm_weight > 0
    with pytest.raises(ValidationError, match="select_candidates"):
        GrpoTrainerConfig(select_candidates=1)
