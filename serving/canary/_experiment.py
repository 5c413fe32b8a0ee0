"""One canary experiment: when it opened and when the candidate's share changed (burn-in
restarts there), the running p-values, and which window aggregates its comparison uses.

The leader keeps it in the routing store beside the routing state (``to_json`` /
``from_json``, versioned), so a replica that takes over continues the same experiment:
the same burn-ins, the same step start for the per-step minimum, the same running
p-values."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas import ArmWindowAggregate, DeploymentState
from serving.canary.analysis import ArmTotals, merge
from serving.routing import RoutingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """What the analysis compares: each arm's settled totals, and for the sample-ratio
    check and the step's sample count, the users assigned and candidate responses of the
    current step."""

    baseline: ArmTotals
    candidate: ArmTotals
    step_users: tuple[int, int]
    step_samples: int


@dataclass
class Experiment:
    """One candidate's canary, from its opening to its promotion or rollback."""

    candidate: str
    started: datetime
    step_started: datetime
    p_min: dict[str, float] = field(default_factory=dict)
    errors_at_start: dict[str, tuple[int, int]] = field(default_factory=dict)
    changes: list[datetime] = field(default_factory=list)
    """When the candidate's share changed (opening, each step, a resume): burn-in starts there."""

    def __post_init__(self) -> None:
        if not self.changes:
            self.changes.append(self.started)

    def to_json(self) -> str:
        return _ExperimentRecord(experiment=self).model_dump_json()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Experiment:
        """Raises pydantic's ValidationError on a record this code cannot read."""
        return _ExperimentRecord.model_validate_json(raw).experiment

    def new_step(self, now: datetime) -> None:
        self.step_started = now
        self.changes.append(now)

    def in_burn_in(self, agg: ArmWindowAggregate, burn_in: timedelta) -> bool:
        end = agg.window_start + timedelta(seconds=agg.window_s)
        return any(agg.window_start < change + burn_in and end > change for change in self.changes)

    def compare(
        self, aggregates: Iterable[ArmWindowAggregate], state: DeploymentState, burn_in: timedelta
    ) -> Comparison:
        """The baseline's windows since the opening and the candidate's, both without the
        windows in a burn-in."""
        aggs = list(aggregates)
        base_aggs = [
            a
            for a in aggs
            if a.arm == "baseline"
            and a.model_version == state.baseline_version
            and a.window_start + timedelta(seconds=a.window_s) > self.started
        ]
        cand_aggs = [a for a in aggs if a.arm == "candidate" and a.model_version == state.candidate_version]
        settled_b = [a for a in base_aggs if not self.in_burn_in(a, burn_in)]
        settled_c = [a for a in cand_aggs if not self.in_burn_in(a, burn_in)]
        # The ratio check covers the windows the comparison uses: settled ones of this step.
        # Right after a change the new arm's first replies are the slowest (a freshly loaded
        # version), so its session starts are the likeliest to miss a short window's grace.
        step_b = [a for a in settled_b if a.window_start >= self.step_started]
        step_c = [a for a in settled_c if a.window_start >= self.step_started]
        # Compare like with like: only windows that both arms have published (one arm's
        # window may be closed while the other's is still open), and assignments only:
        # sessions ending in a window may have started before the step (all on the
        # baseline), which reads as a sample-ratio mismatch that is not there.
        both = {a.window_start for a in step_b} & {a.window_start for a in step_c}
        users = (
            merge(a for a in step_b if a.window_start in both).users_assigned,
            merge(a for a in step_c if a.window_start in both).users_assigned,
        )
        return Comparison(merge(settled_b), merge(settled_c), users, merge(step_c).responses)


class _ExperimentRecord(BaseModel):
    """The stored form: ``version`` changes when the fields of ``Experiment`` do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    experiment: Experiment


def stored_experiment(store: RoutingStore, model: str, candidate: str | None) -> Experiment | None:
    """The bookkeeping a leader left in the store for ``candidate``'s canary (None: none, or another's)."""
    raw = store.experiment(model)
    if raw is None:
        return None
    try:
        exp = Experiment.from_json(raw)
    except ValidationError as exc:
        log.error("%s: unreadable experiment record in the routing store, starting afresh: %s", model, exc)
        return None
    return exp if exp.candidate == candidate else None
