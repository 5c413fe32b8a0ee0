"""Per-step reporting of a running job: progress bar on a terminal, loss gauge, and an
early stop when the job's lease was lost."""

from __future__ import annotations

import sys

from prometheus_client import Counter
from tqdm import tqdm

from trainers.worker.lease import LeaseKeeper, LeaseLostError

train_steps_total = Counter("flywheel_trainers_train_steps_total", "Optimiser steps taken, by job kind.", ["kind"])


class StepReporter:
    """A ``StepHook``: call with (step, total, loss) after each optimiser step."""

    def __init__(self, kind: str, description: str, keeper: LeaseKeeper) -> None:
        self.kind = kind
        self.keeper = keeper
        self._bar = tqdm(desc=description, unit="step", leave=False) if sys.stderr.isatty() else None
        self._last = 0

    def __call__(self, step: int, total: int, loss: float | None) -> None:
        train_steps_total.labels(self.kind).inc(max(0, step - self._last))
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(step - self._last)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.3f}")
        self._last = step
        if self.keeper.lost.is_set():
            raise LeaseLostError(f"lease {self.keeper.key} lost at step {step}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
