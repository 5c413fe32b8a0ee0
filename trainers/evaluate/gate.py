"""The offline gate: candidate vs baseline on held-out prompts.

Guardrails (instruction following, violations) reject a candidate that regresses
beyond tolerance; a reward-model win rate above the ceiling is flagged as likely
reward hacking (the report this platform follows lost engagement at 70 % win rate).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from schemas import EMOJI, EvalReport, check_policy, follows_instructions, words
from trainers.characters import CHARACTERS_BY_ID, chat_messages, held_out_prompts
from trainers.common.data import Prompt
from trainers.evaluate.gate_config import GateSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from trainers.reward.scoring import RewardModel

gate_result = Gauge(
    "flywheel_trainers_gate_result",
    "Latest offline-gate numbers of a candidate, by metric.",
    ["metric"],
)


@dataclass(frozen=True)
class PolicyStats:
    """Rates of one model's replies on the held-out prompts."""

    instruction_following: float
    violation_rate: float
    mean_words: float
    emoji_rate: float
    question_rate: float
    reward_score: float | None
    rewards: tuple[float, ...] = ()

    def style(self) -> dict[str, float]:
        return {"mean_words": self.mean_words, "emoji_rate": self.emoji_rate, "question_rate": self.question_rate}


def evaluation_prompts(settings: GateSettings) -> list[Prompt]:
    """The held-out prompts as Prompt objects (system prompt + user message)."""
    return [
        Prompt(
            chat_messages(CHARACTERS_BY_ID[p.character_id], p.user_message),
            CHARACTERS_BY_ID[p.character_id].instructions,
            p.character_id,
        )
        for p in held_out_prompts(per_character=settings.prompts_per_character)
    ]


def policy_stats(prompts: Sequence[Prompt], replies: Sequence[str], reward_model: RewardModel | None) -> PolicyStats:
    n = max(1, len(replies))
    rewards = tuple(reward_model.score(prompts, replies)) if reward_model is not None else ()
    return PolicyStats(
        instruction_following=sum(
            follows_instructions(r, p.instructions) for p, r in zip(prompts, replies, strict=False)
        )
        / n,
        violation_rate=sum(not check_policy(r).passed for r in replies) / n,
        mean_words=sum(len(words(r)) for r in replies) / n,
        emoji_rate=sum(bool(EMOJI.search(r)) for r in replies) / n,
        question_rate=sum(EMOJI.sub("", r).rstrip().endswith("?") for r in replies) / n,
        reward_score=statistics.fmean(rewards) if rewards else None,
        rewards=rewards,
    )


def predicted_lift(cand: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """The reward model's predicted continue-rate lift of candidate over baseline replies:
    mean difference of sigmoid(score) over paired replies (same prompt, same sample index),
    with a 95 % normal interval."""
    diffs = [1 / (1 + math.exp(-c)) - 1 / (1 + math.exp(-b)) for c, b in zip(cand, base, strict=True)]
    mean = statistics.fmean(diffs)
    half = 1.959964 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return mean, mean - half, mean + half


class OfflineGate:
    """Evaluate a candidate policy against a baseline and decide pass / reject."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self.prompts = evaluation_prompts(self.settings)

    def replies(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[list[Prompt], list[str]]:
        # torch is imported on first use, so `trainers.evaluate` (and the settings that
        # embed GateSettings) stay importable on torch-free stream-processing nodes.
        from trainers.common.generation import SamplingSettings, generate_replies

        s = self.settings
        sampling = SamplingSettings(max_new_tokens=s.max_new_tokens, temperature=s.temperature, seed=s.seed)
        out = generate_replies(model, tokenizer, [p.messages for p in self.prompts], sampling, s.samples_per_prompt)
        prompts = [p for p, rs in zip(self.prompts, out, strict=False) for _ in rs]
        return prompts, [r for rs in out for r in rs]

    def stats_of(self, path: Path, reward_model: RewardModel | None = None) -> PolicyStats:
        from trainers.common.loading import load_policy

        model, tokenizer = load_policy(path)
        prompts, replies = self.replies(model, tokenizer)
        return policy_stats(prompts, replies, reward_model)

    def evaluate(
        self,
        candidate: Path,
        baseline: Path | None,
        baseline_version: str | None,
        reward_model: RewardModel | None = None,
    ) -> EvalReport:
        """Generate with both models on the held-out prompts (same seed) and judge."""
        cand = self.stats_of(candidate, reward_model)
        base = self.stats_of(baseline, reward_model) if baseline is not None else None
        return self.judge(cand, base, baseline_version)

    def judge(self, cand: PolicyStats, base: PolicyStats | None, baseline_version: str | None) -> EvalReport:
        s = self.settings
        reasons: list[str] = []
        flags: list[str] = []
        win_rate: float | None = None
        lift: tuple[float, float, float] | None = None
        drift: dict[str, float] = {}
        if cand.violation_rate > s.max_violation_rate:
            reasons.append(f"violation rate {cand.violation_rate:.3f} above the limit {s.max_violation_rate:.3f}")
        if base is not None:
            if cand.instruction_following < base.instruction_following - s.if_tolerance:
                reasons.append(
                    f"instruction following fell from {base.instruction_following:.3f} to "
                    f"{cand.instruction_following:.3f} (tolerance {s.if_tolerance:.3f})"
                )
            if cand.violation_rate > base.violation_rate + s.violation_tolerance:
                reasons.append(
                    f"violation rate rose from {base.violation_rate:.3f} to {cand.violation_rate:.3f} "
                    f"(tolerance {s.violation_tolerance:.3f})"
                )
            drift = {k: round(v - base.style()[k], 4) for k, v in cand.style().items()}
            if cand.rewards and base.rewards:
                wins = [
                    1.0 if c > b else 0.5 if c == b else 0.0 for c, b in zip(cand.rewards, base.rewards, strict=False)
                ]
                win_rate = sum(wins) / len(wins)
                lift = predicted_lift(cand.rewards, base.rewards)
                if win_rate > s.win_rate_ceiling:
                    text = (
                        f"reward-model win rate {win_rate:.3f} above the ceiling {s.win_rate_ceiling:.2f}: "
                        "likely over-optimising the reward model"
                    )
                    (reasons if s.reject_above_ceiling else flags).append(text)
        report = EvalReport(
            baseline_version=baseline_version,
            prompts=len(self.prompts) * s.samples_per_prompt,
            instruction_following=round(cand.instruction_following, 4),
            violation_rate=round(cand.violation_rate, 4),
            reward_score=cand.reward_score,
            baseline_instruction_following=None if base is None else round(base.instruction_following, 4),
            baseline_violation_rate=None if base is None else round(base.violation_rate, 4),
            baseline_reward_score=None if base is None else base.reward_score,
            win_rate=win_rate,
            rm_predicted_lift=None if lift is None else round(lift[0], 4),
            rm_predicted_lift_ci_low=None if lift is None else round(lift[1], 4),
            rm_predicted_lift_ci_high=None if lift is None else round(lift[2], 4),
            style_drift=drift,
            passed=not reasons,
            reasons=tuple(reasons),
            flags=tuple(flags),
        )
        gate_result.labels("instruction_following").set(report.instruction_following)
        gate_result.labels("violation_rate").set(report.violation_rate)
        if win_rate is not None:
            gate_result.labels("win_rate").set(win_rate)
        return report
