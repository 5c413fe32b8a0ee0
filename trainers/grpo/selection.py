"""Which prompts GRPO trains on, and how many of its groups carried no signal (torch-free).

GRPO's advantage is a reply's reward relative to the other replies of its group (the
same prompt). When every reply of a group scores the same, every advantage is zero: the
group costs a generation and teaches nothing (only the KL term acts). So prompts are
chosen by how much their sampled replies differ in reward, and the ones that do not
differ are skipped and counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence


def reward_spread(scores: Sequence[float]) -> float:
    """Population standard deviation of one prompt's sampled rewards (0 for fewer than two)."""
    return statistics.pstdev(scores) if len(scores) > 1 else 0.0


def choose_prompts(spreads: Sequence[float], fraction: float, min_spread: float) -> tuple[list[int], int]:
    """Indices of the prompts to train on, widest reward spread first, and how many were
    skipped because their spread is at or below ``min_spread``.

    At most ``max(1, round(len(spreads) * fraction))`` prompts are kept, and only ones
    above ``min_spread``: a list shorter than that (or empty) means there were not enough
    prompts with any signal. Ties keep the original (recency) order.
    """
    live = [i for i, s in enumerate(spreads) if s > min_spread]
    keep = max(1, round(len(spreads) * fraction)) if spreads else 0
    return sorted(live, key=lambda i: -spreads[i])[:keep], len(spreads) - len(live)


def zero_advantage_groups(log_history: Iterable[Mapping[str, float]], groups_per_step: int) -> int:
    """Groups whose rewards were all equal during training, from trl's per-step
    ``frac_reward_zero_std`` (share of the step's completions in such groups)."""
    return round(
        sum(float(h["frac_reward_zero_std"]) for h in log_history if "frac_reward_zero_std" in h) * groups_per_step
    )
