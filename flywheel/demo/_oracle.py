"""Oracle numbers for the demo's report: how engaging each model's replies truly are.

Every model answers the same held-out contexts (``flywheel.sim.oracle``) several times
with the same sampling seed; the oracle scores each reply. The ceiling is the best of 32
base-model samples per context, picked by the oracle: a target the base model can reach,
whose gap to the base is the headroom. Nothing here feeds back into the platform.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
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

# Sized for the demo's budget: on one core 96 contexts x 4 samples took 23 s per model and
# the 32-sample ceiling 240 s; 48 x 2 keeps each model to a few seconds, and the ceiling is
# computed once per base model and cached beside it.
CONTEXTS = 48
SAMPLES_PER_CONTEXT = 2
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
        from trainers.common.generation import SamplingConfig, generate_replies
        from trainers.common.loading import load_policy

        model, tokenizer = load_policy(model_dir)
        sampling = SamplingConfig(max_new_tokens=self.max_new_tokens, seed=1)
        return generate_replies(model, tokenizer, [c.messages() for c in self.contexts], sampling, samples)

    def _score(self, replies: Sequence[Sequence[str]]) -> list[list[float]]:
        return [
            [self.oracle.continue_probability(c, r) for r in rs] for c, rs in zip(self.contexts, replies, strict=True)
        ]

    def scores(self, model_dir: Path) -> OracleScores:
        per = self._score(self._replies(model_dir, SAMPLES_PER_CONTEXT))
        return OracleScores(tuple(statistics.fmean(s) for s in per))

    def ceiling(self, base_dir: Path, cache_dir: Path | None = None) -> OracleScores:
        """Best of ``CEILING_SAMPLES`` base-model replies per context, by the oracle; cached
        in ``cache_dir`` under a key of everything that decides it."""
        cache = None if cache_dir is None else cache_dir / f"oracle-ceiling-{self.ceiling_key(base_dir)}.json"
        if cache is not None and cache.is_file():
            return OracleScores(tuple(json.loads(cache.read_text())))
        per = self._score(self._replies(base_dir, CEILING_SAMPLES))
        scores = OracleScores(tuple(max(s) for s in per))
        if cache is not None:
            cache.write_text(json.dumps(scores.per_context))
        return scores

    def ceiling_key(self, base_dir: Path) -> str:
        from flywheel.sim import _judge, _population, _style, oracle

        h = hashlib.sha256(f"{CONTEXTS}:{CEILING_SAMPLES}:{self.max_new_tokens}".encode())
        h.update((base_dir / "model.safetensors").read_bytes())
        for module in (_judge, _population, _style, oracle):
            h.update(inspect.getsource(module).encode())
        return h.hexdigest()[:16]


def oracle_step_s(base_model: Path, max_new_tokens: int) -> float:
    """Wall time to keep for the report's oracle step (two cores): the models' scores, and
    the ceiling unless it is cached for ``base_model``."""
    judge = OracleJudge(max_new_tokens)
    cached = (base_model.parent / f"oracle-ceiling-{judge.ceiling_key(base_model)}.json").is_file()
    return 30.0 if cached else 120.0


def with_oracle(runtime: DemoRuntime, report: DemoReport) -> DemoReport:
    """``report`` with the oracle continue rate of the base, every generation and the
    final model, the ceiling, and the final model's paired lift over the base."""
    import torch

    from flywheel.demo._trainers import base_model_dir, checkpoint_dir

    judge = OracleJudge(max_new_tokens=runtime.config.simulator.max_tokens)
    threads = torch.get_num_threads()
    # Users are paused and the trainer waits on the load lock: this step may use every core.
    with runtime.load_lock:
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            base_dir = checkpoint_dir(runtime, report.base_version)
            by_version = {report.base_version: judge.scores(base_dir)}
            for g in report.generations:
                by_version[g.version] = judge.scores(checkpoint_dir(runtime, g.version))
            ceiling = judge.ceiling(base_dir, cache_dir=base_model_dir().parent)
        finally:
            torch.set_num_threads(threads)
    base, final = by_version[report.base_version], by_version[report.final_version]
    lift, low, high = paired_lift(final, base)
    return report.model_copy(
        update={
            "base": report.base.model_copy(update={"oracle_continue_rate": round(base.mean, 4)}),
            "final": report.final.model_copy(update={"oracle_continue_rate": round(final.mean, 4)}),
            "generations": tuple(
                g.model_copy(
                    update={
                        "oracle_continue_rate": round(by_version[g.version].mean, 4),
                        "headroom_captured": _captured(by_version[g.version].mean, base.mean, ceiling.mean),
                    }
                )
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


def _captured(oracle: float, base: float, ceiling: float) -> float | None:
    return round((oracle - base) / (ceiling - base), 4) if ceiling > base else None
