"""Best-of-N: sample candidates from the current policy, score them, keep the extremes.
Feeds rejection-sampled SFT (best) and DPO (best vs worst)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainers.common.data import Prompt
from trainers.common.generation import SamplingConfig, generate_replies


class Scorer(Protocol):
    """Anything that scores replies to prompts (higher is better)."""

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class Ranked:
    """The candidates of one prompt, best first, with their scores."""

    prompt: Prompt
    replies: tuple[str, ...]
    scores: tuple[float, ...]

    @property
    def best(self) -> tuple[str, float]:
        return self.replies[0], self.scores[0]

    @property
    def worst(self) -> tuple[str, float]:
        return self.replies[-1], self.scores[-1]


def candidate_order(sampled: Sequence[str], given: Sequence[str]) -> list[str]:
    """Candidates of one prompt in tie-break order: the given replies (the one users
    actually continued after) before the policy's own samples, so that on equal scores the
    ranking (a stable sort) keeps the reply with evidence of engagement. Blank replies go."""
    return [r for r in [*given, *sampled] if r.strip()]


def rank_candidates(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    scorer: Scorer,
    n: int,
    sampling: SamplingConfig,
    extra: Sequence[Sequence[str]] | None = None,
) -> list[Ranked]:
    """``n`` sampled replies per prompt (plus ``extra`` given replies, e.g. the curated one),
    scored and sorted best first."""
    sampled = (
        generate_replies(model, tokenizer, [p.messages for p in prompts], sampling, num_return_sequences=n)
        if n > 0
        else [[] for _ in prompts]
    )
    flat_prompts: list[Prompt] = []
    flat_replies: list[str] = []
    per_prompt: list[list[str]] = []
    for i, (p, replies) in enumerate(zip(prompts, sampled, strict=True)):
        candidates = candidate_order(replies, extra[i] if extra else ())
        per_prompt.append(candidates)
        flat_prompts.extend([p] * len(candidates))
        flat_replies.extend(candidates)
    scores = scorer.score(flat_prompts, flat_replies) if flat_replies else []
    out: list[Ranked] = []
    k = 0
    for p, candidates in zip(prompts, per_prompt, strict=True):
        s = scores[k : k + len(candidates)]
        k += len(candidates)
        order = sorted(range(len(candidates)), key=lambda j: -s[j])
        out.append(Ranked(p, tuple(candidates[j] for j in order), tuple(s[j] for j in order)))
    return out
