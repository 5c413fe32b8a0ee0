"""Oracle numbers for the demo's report: how engaging each model's replies truly are.

Every model answers the same held-out contexts (``flywheel.sim.oracle``) several times
with the same sampling seed; the oracle scores each reply. The ceiling is the best of 32
base-model samples per context, picked by the oracle: a target the base model can reach,
whose gap to the base is the headroom. Nothing here feeds back into the platform.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.demo.report import DemoReport, OracleLift
from flywheel.sim import shared_catalogue
from flywheel.sim.oracle import Oracle, SimContext, held_out_contexts

if TYPE_CHECKING:
    from flywheel.demo.runtime import DemoRuntime

CONTEXTS = 96
SAMPLES_PER_CONTEXT = 4
CEILING_SAMPLES = 32
_Z_95 = 1.959964


@dataclass(frozen=True)
class OracleScores:
    """Mean oracle continue probability per context (each over its samples)."""

    per_context: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_context)


def paired_lift(after: OracleScores, before: OracleScores) -> tuple[float, float, float]:
    """Mean per-context difference and its 95 % interval (normal approximation)."""
    diffs = [a - b for a, b in zip(after.per_context, before.per_context, strict=True)]
    mean = statistics.fmean(diffs)
    half = _Z_95 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return mean, mean - half, mean + half


class OracleJudge:
    """Scores model folders on the held-out contexts."""

    def __init__(self, max_new_tokens: int, seed: int = 0) -> None:
        self.contexts: tuple[SimContext, ...] = held_out_contexts(shared_catalogue(), CONTEXTS)
        self.oracle = Oracle(seed=seed)
        self.max_new_tokens = max_new_tokens

    def _replies(self, model_dir: Path, samples: int) -> list[list[str]]:
        from trainers.common.generation import SamplingSettings, generate_replies
        from trainers.common.loading import load_policy

        model, tokenizer = load_policy(model_dir)
        sampling = SamplingSettings(max_new_tokens=self.max_new_tokens, seed=1)
        return generate_replies(model, tokenizer, [c.messages() for c in self.contexts], sampling, samples)

    def _score(self, replies: Sequence[Sequence[str]]) -> list[list[float]]:
        return [
            [self.oracle.continue_probability(c, r) for r in rs] for c, rs in zip(self.contexts, replies, strict=True)
        ]

    def scores(self, model_dir: Path) -> OracleScores:
        per = self._score(self._replies(model_dir, SAMPLES_PER_CONTEXT))
        return OracleScores(tuple(statistics.fmean(s) for s in per))

    def ceiling(self, base_dir: Path) -> OracleScores:
        """Best of ``CEILING_SAMPLES`` base-model replies per context, by the oracle."""
        per = self._score(self._replies(base_dir, CEILING_SAMPLES))
        return OracleScores(tuple(max(s) for s in per))


def with_oracle(runtime: DemoRuntime, report: DemoReport) -> DemoReport:
    """``report`` with the oracle continue rate of the base, every generation and the
    final model, the ceiling, and the final model's paired lift over the base."""
    from flywheel.demo._trainers import checkpoint_dir

    judge = OracleJudge(max_new_tokens=runtime.config.simulator.max_tokens)
    with runtime.load_lock:
        base_dir = checkpoint_dir(runtime, report.base_version)
        by_version = {report.base_version: judge.scores(base_dir)}
        for g in report.generations:
            by_version[g.version] = judge.scores(checkpoint_dir(runtime, g.version))
        ceiling = judge.ceiling(base_dir)
    base, final = by_version[report.base_version], by_version[report.final_version]
    lift, low, high = paired_lift(final, base)
    return report.model_copy(
        update={
            "base": report.base.model_copy(update={"oracle_continue_rate": round(base.mean, 4)}),
            "final": report.final.model_copy(update={"oracle_continue_rate": round(final.mean, 4)}),
            "generations": tuple(
                g.model_copy(update={"oracle_continue_rate": round(by_version[g.version].mean, 4)})
                for g in report.generations
            ),
            "ceiling_oracle_continue_rate": round(ceiling.mean, 4),
            "oracle_final_vs_base": OracleLift(
                lift=round(lift, 4),
                ci_low=round(low, 4),
                ci_high=round(high, 4),
                contexts=len(base.per_context),
                samples_per_context=SAMPLES_PER_CONTEXT,
            ),
        }
    )
