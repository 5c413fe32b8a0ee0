"""Scoring replies: a trained reward model, the verifiable checks, and their blend.

The blend is what rejection sampling keeps, what DPO's best-vs-worst pairs are built
from and what GRPO maximises, so "better" means the same thing in all three."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from schemas import check_instructions, check_policy
from trainers.common.candidates import Scorer
from trainers.common.data import Prompt


class RewardModel:
    """A trained reward model (a folder with a one-logit sequence classifier)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> RewardModel:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model.config.pad_token_id = tokenizer.pad_token_id
        if device:
            model.to(device)
        return cls(model, tokenizer)

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        """Raw reward (logit) per reply; higher is better. For a pointwise model
        ``sigmoid(score)`` is P(continued)."""
        device = next(self.model.parameters()).device
        texts = [
            self.tokenizer.apply_chat_template(p.with_reply(r), tokenize=False)
            for p, r in zip(prompts, replies, strict=True)
        ]
        out: list[float] = []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[i : i + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                    truncation=True,
                    max_length=512,
                ).to(device)
                with torch.no_grad():
                    out.extend(self.model(**enc).logits[:, 0].float().tolist())
        finally:
            self.tokenizer.padding_side = side
        return out


def check_score(prompt: Prompt, reply: str) -> float:
    """Verifiable part of the reward: share of instructions passed, minus 1 for a
    policy violation (so a violation always loses to a clean reply)."""
    report = check_instructions(reply, prompt.instructions)
    share = sum(r.passed for r in report.results) / len(report.results) if report.results else 1.0
    full = 1.0 if report.passed else 0.0
    return 0.5 * share + 0.5 * full - (0.0 if check_policy(reply).passed else 1.0)


class BlendedScorer:
    """``check_weight * check_score + rm_weight * tanh(reward model)``.

    The verifiable checks dominate by default: the reward model breaks ties among
    compliant replies (the report used engagement models as filters, not as the goal).
    """

    def __init__(self, reward_model: Scorer | None = None, check_weight: float = 1.0, rm_weight: float = 0.25) -> None:
        self.reward_model = reward_model
        self.check_weight = check_weight
        self.rm_weight = rm_weight

    def score(self, prompts: Sequence[Prompt], replies: Sequence[str]) -> list[float]:
        checks = [check_score(p, r) for p, r in zip(prompts, replies, strict=True)]
        if self.reward_model is None or self.rm_weight == 0:
            return [self.check_weight * c for c in checks]
        rm = self.reward_model.score(prompts, replies)
        return [
            self.check_weight * c + self.rm_weight * float(torch.tanh(torch.tensor(r)))
            for c, r in zip(checks, rm, strict=False)
        ]
