"""The engagement model's own held-out check: ranking (ROC AUC) and calibration on
labelled traffic it was not trained on."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from schemas import RewardSample


def is_held_out(conversation_id: str, share: float) -> bool:
    """Deterministic split by conversation: a conversation's replies stay on one side, and a
    retried job splits the same way."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_samples(samples: Sequence[RewardSample], share: float) -> tuple[list[RewardSample], list[RewardSample]]:
    """(train, held out)."""
    train: list[RewardSample] = []
    held: list[RewardSample] = []
    for s in samples:
        (held if is_held_out(s.conversation_id, share) else train).append(s)
    return train, held


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half);
    None without both classes."""
    positives = [r for r, y in zip(ranks(scores), labels, strict=True) if y >= 0.5]
    n_pos, n_neg = len(positives), len(scores) - len(positives)
    if n_pos == 0 or n_neg == 0:
        return None
    return (sum(positives) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def calibration_error(probabilities: Sequence[float], labels: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: the mean |predicted − observed| rate over equal-width
    probability bins, weighted by how many predictions fall in each."""
    totals = [[0, 0.0, 0.0] for _ in range(bins)]
    for p, y in zip(probabilities, labels, strict=True):
        b = totals[min(bins - 1, int(p * bins))]
        b[0] += 1
        b[1] += p
        b[2] += y
    n = max(1, len(probabilities))
    return sum(abs(s_p - s_y) for count, s_p, s_y in totals if count) / n


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
