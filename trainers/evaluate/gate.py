"""The offline gate: candidate vs baseline on held-out prompts.

Every held-out prompt gets k sampled replies from each model; the guardrails
(instruction following, violations) compare the two paired by prompt and reject a
candidate that is worse than the baseline, or than the lineage's base model, by more
than a tolerance *with confidence* (the paired interval), so sampling noise on a few
dozen prompts neither rejects an equal candidate nor lets tolerances ratchet down over
generations. A reward-model win rate above the ceiling is flagged as likely reward
hacking (the report this platform follows lost engagement at 70 % win rate), and so is a
style drift; the two together reject.
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
from trainers.evaluate.gate_config import GateConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from trainers.common.candidates import Scorer

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
    following_per_prompt: tuple[float, ...] = ()
    """Share of each held-out prompt's k replies that followed the instructions (prompt order)."""
    violations_per_prompt: tuple[float, ...] = ()
    """…and that broke the content policy."""

    def style(self) -> dict[str, float]:
        return {"mean_words": self.mean_words, "emoji_rate": self.emoji_rate, "question_rate": self.question_rate}


def evaluation_prompts(settings: GateConfig) -> list[Prompt]:
    """The held-out prompts as Prompt objects (system prompt + user message)."""
    return [
        Prompt(
            chat_messages(CHARACTERS_BY_ID[p.character_id], p.user_message),
            CHARACTERS_BY_ID[p.character_id].instructions,
            p.character_id,
        )
        for p in held_out_prompts(per_character=settings.prompts_per_character)
    ]


def policy_stats(
    prompts: Sequence[Prompt], replies: Sequence[str], reward_model: Scorer | None, per_prompt: int = 1
) -> PolicyStats:
    """Rates of ``replies`` (``per_prompt`` consecutive replies per held-out prompt)."""
    n = max(1, len(replies))
    rewards = tuple(reward_model.score(prompts, replies)) if reward_model is not None else ()
    following = [float(follows_instructions(r, p.instructions)) for p, r in zip(prompts, replies, strict=True)]
    violating = [float(not check_policy(r).passed) for r in replies]
    return PolicyStats(
        instruction_following=sum(following) / n,
        violation_rate=sum(violating) / n,
        mean_words=sum(len(words(r)) for r in replies) / n,
        emoji_rate=sum(bool(EMOJI.search(r)) for r in replies) / n,
        question_rate=sum(EMOJI.sub("", r).rstrip().endswith("?") for r in replies) / n,
        reward_score=statistics.fmean(rewards) if rewards else None,
        rewards=rewards,
        following_per_prompt=_per_prompt(following, per_prompt),
        violations_per_prompt=_per_prompt(violating, per_prompt),
    )


def _per_prompt(values: Sequence[float], k: int) -> tuple[float, ...]:
    return tuple(statistics.fmean(values[i : i + k]) for i in range(0, len(values), k))


def paired_interval(
    cand: Sequence[float], base: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``cand[i] - base[i]`` with a two-sided normal interval (infinite with one pair)."""
    diffs = [c - b for c, b in zip(cand, base, strict=True)]
    mean = statistics.fmean(diffs)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return mean, mean - half, mean + half


def predicted_lift(cand: Sequence[float], base: Sequence[float]) -> tuple[float, float, float]:
    """The reward model's predicted continue-rate lift of candidate over baseline replies:
    mean difference of sigmoid(score) over paired replies (same prompt, same sample index),
    with a 95 % normal interval."""
    return paired_interval([_sigmoid(c) for c in cand], [_sigmoid(b) for b in base])


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@dataclass(frozen=True)
class _Guardrail:
    """One paired comparison the gate decides on: is the candidate confidently worse?"""

    interval: tuple[float, float, float] | None
    reason: str | None


def _guardrail(
    name: str,
    cand: float,
    ref: float,
    per_prompt: tuple[Sequence[float], Sequence[float]],
    sign: int,
    tol: float,
    confidence: float,
    against: str,
) -> _Guardrail:
    """``sign`` +1: higher is better (instruction following); -1: lower is (violations). With
    per-prompt rates the decision is on the paired interval; without (given rates), on the
    point difference."""
    c, b = per_prompt
    interval = paired_interval(c, b, confidence) if len(c) > 1 and len(c) == len(b) else None
    worse_by = -sign * (interval[2] if sign > 0 else interval[1]) if interval else -sign * (cand - ref)
    if worse_by <= tol:
        return _Guardrail(interval, None)
    evidence = (
        f"difference {interval[0]:+.3f} [{interval[1]:+.3f}, {interval[2]:+.3f}] over {len(c)} prompts"
        if interval
        else f"difference {cand - ref:+.3f}"
    )
    verb = "fell" if sign > 0 else "rose"
    return _Guardrail(
        interval, f"{name} {verb} from {ref:.3f} ({against}) to {cand:.3f}: {evidence}, beyond the tolerance {tol:.3f}"
    )


class OfflineGate:
    """Evaluate a candidate policy against a baseline and decide pass / reject."""

    def __init__(self, settings: GateConfig | None = None) -> None:
        self.settings = settings or GateConfig()
        self.prompts = evaluation_prompts(self.settings)

    def replies(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[list[Prompt], list[str]]:
        # torch is imported on first use, so `trainers.evaluate` (and the settings that
        # embed GateConfig) stay importable on torch-free stream-processing nodes.
        from trainers.common.generation import SamplingConfig, generate_replies

        s = self.settings
        sampling = SamplingConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature, seed=s.seed)
        out = generate_replies(model, tokenizer, [p.messages for p in self.prompts], sampling, s.samples_per_prompt)
        prompts = [p for p, rs in zip(self.prompts, out, strict=False) for _ in rs]
        return prompts, [r for rs in out for r in rs]

    def stats_of(self, path: Path, reward_model: Scorer | None = None) -> PolicyStats:
        from trainers.common.loading import load_policy

        model, tokenizer = load_policy(path)
        prompts, replies = self.replies(model, tokenizer)
        return policy_stats(prompts, replies, reward_model, self.settings.samples_per_prompt)

    def anchor_stats(self, path: Path) -> PolicyStats:
        """The base model's rates, once per process and settings: they never change."""
        key = (str(path.resolve()), self.settings.model_dump_json())
        if key not in _ANCHORS:
            _ANCHORS[key] = self.stats_of(path)
        return _ANCHORS[key]

    def evaluate(
        self,
        candidate: Path,
        baseline: Path | None,
        baseline_version: str | None,
        reward_model: Scorer | None = None,
        anchor: tuple[str, Path] | None = None,
    ) -> EvalReport:
        """Generate with both models on the held-out prompts (same seed) and judge; with
        ``anchor`` (version and folder of the lineage's base model, when the baseline is not
        it), against the base model too."""
        cand = self.stats_of(candidate, reward_model)
        base = self.stats_of(baseline, reward_model) if baseline is not None else None
        root = (anchor[0], self.anchor_stats(anchor[1])) if anchor is not None else None
        return self.judge(cand, base, baseline_version, root)

    def judge(
        self,
        cand: PolicyStats,
        base: PolicyStats | None,
        baseline_version: str | None,
        anchor: tuple[str, PolicyStats] | None = None,
    ) -> EvalReport:
        s = self.settings
        reasons: list[str] = []
        flags: list[str] = []
        win_rate: float | None = None
        lift: tuple[float, float, float] | None = None
        drift: dict[str, float] = {}
        following = violating = None
        if cand.violation_rate > s.max_violation_rate:
            reasons.append(f"violation rate {cand.violation_rate:.3f} above the limit {s.max_violation_rate:.3f}")
        references = [("the baseline", base, s.if_tolerance, s.violation_tolerance)]
        if anchor is not None:
            references.append(
                (f"the base model {anchor[0]}", anchor[1], s.anchor_if_tolerance, s.anchor_violation_tolerance)
            )
        for against, ref, if_tol, viol_tol in references:
            if ref is None:
                continue
            f = _guardrail(
                "instruction following",
                cand.instruction_following,
                ref.instruction_following,
                (cand.following_per_prompt, ref.following_per_prompt),
                +1,
                if_tol,
                s.confidence,
                against,
            )
            v = _guardrail(
                "violation rate",
                cand.violation_rate,
                ref.violation_rate,
                (cand.violations_per_prompt, ref.violations_per_prompt),
                -1,
                viol_tol,
                s.confidence,
                against,
            )
            reasons += [g.reason for g in (f, v) if g.reason]
            if ref is base:
                following, violating = f.interval, v.interval
        if base is not None:
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
            hack = self._style_guard(drift, win_rate, lift)
            if hack is not None:
                (reasons if hack[0] else flags).append(hack[1])
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
            **_interval_fields("instruction_following_diff", following),
            **_interval_fields("violation_rate_diff", violating),
            anchor_version=None if anchor is None else anchor[0],
            anchor_instruction_following=None if anchor is None else round(anchor[1].instruction_following, 4),
            anchor_violation_rate=None if anchor is None else round(anchor[1].violation_rate, 4),
            passed=not reasons,
            reasons=tuple(reasons),
            flags=tuple(flags),
        )
        gate_result.labels("instruction_following").set(report.instruction_following)
        gate_result.labels("violation_rate").set(report.violation_rate)
        if win_rate is not None:
            gate_result.labels("win_rate").set(win_rate)
        return report

    def _style_guard(
        self, drift: dict[str, float], win_rate: float | None, lift: tuple[float, float, float] | None
    ) -> tuple[bool, str] | None:
        """(reject?, reason) when a style statistic moved beyond its bound: rejected as likely
        reward hacking when the reward model's score jumped with it, else only flagged."""
        s = self.settings
        beyond = {k: d for k, d in drift.items() if k in s.style_drift_bounds and abs(d) > s.style_drift_bounds[k]}
        if not beyond:
            return None
        moved = ", ".join(f"{k} {d:+.3f} (bound {s.style_drift_bounds[k]:.3f})" for k, d in beyond.items())
        jumps = []
        if win_rate is not None and win_rate > s.win_rate_ceiling:
            jumps.append(f"win rate {win_rate:.3f} > {s.win_rate_ceiling:.2f}")
        if lift is not None and lift[1] > s.hack_predicted_lift:
            jumps.append(
                f"predicted lift {lift[0]:+.3f} [{lift[1]:+.3f}, {lift[2]:+.3f}] > {s.hack_predicted_lift:+.3f}"
            )
        if jumps:
            return (
                True,
                f"style drift {moved} while the reward model's score jumped ({'; '.join(jumps)}): likely reward hacking",
            )
        return False, f"style drift {moved}"


_ANCHORS: dict[tuple[str, str], PolicyStats] = {}


def _interval_fields(name: str, interval: tuple[float, float, float] | None) -> dict[str, float | None]:
    if interval is None:
        return {name: None, f"{name}_ci_low": None, f"{name}_ci_high": None}
    finite = [None if math.isinf(x) else round(x, 4) for x in interval]
    return {name: finite[0], f"{name}_ci_low": finite[1], f"{name}_ci_high": finite[2]}
