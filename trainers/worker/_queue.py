"""The jobs a worker has read from ``trainer.jobs`` and not finished: which to take next,
which a newer request has superseded, and how far each partition may be committed.

Order: reward-model jobs first (they are cheap, and every policy job after them is
ranked, rewarded and gated with the fresher model), then the higher ``priority`` (an
operator's job), then the oldest. Within a *lane* (the policy, or one reward model) a
job is superseded by a newer one of at least its priority: the newer job's ranges are
the newer traffic, and its bounded replay reaches back over the older ones.

A partition is committed only up to its oldest job still waiting, so a worker that dies
with jobs read but not done leaves them to be read again; superseding is deterministic
given what was read, and publishing is idempotent, so a redo gives the same versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas import TrainJobRequest
from streams import Record, TopicPartition

Lane = str


@dataclass(frozen=True)
class Waiting:
    """One readable job, where it was read and the lane it competes in."""

    record: Record
    job: TrainJobRequest
    lane: Lane
    is_reward: bool

    @property
    def key(self) -> tuple[TopicPartition, int]:
        return self.record.tp, self.record.offset


class JobQueue:
    """Jobs read and not yet done, by where they were read (``Record.tp``, offset)."""

    def __init__(self, lane_of: Callable[[TrainJobRequest], Lane]) -> None:
        self._lane_of = lane_of
        self._waiting: dict[tuple[TopicPartition, int], Waiting] = {}
        self._read_to: dict[TopicPartition, int] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def read(self, record: Record, job: TrainJobRequest | None) -> None:
        """Note ``record`` as read; ``job`` None means it was unreadable (nothing to wait for).
        A record read twice (after a rebalance or a restart) is kept once."""
        self._read_to[record.tp] = max(self._read_to.get(record.tp, 0), record.offset + 1)
        if job is not None and (record.tp, record.offset) not in self._waiting:
            w = Waiting(record, job, self._lane_of(job), job.kind == "reward")
            self._waiting[w.key] = w

    def supersede(self) -> list[Waiting]:
        """Remove and return the jobs that a newer job of the same lane and at least their
        priority makes stale."""
        stale = [
            w
            for w in self._waiting.values()
            if any(
                o.lane == w.lane and o.job.priority >= w.job.priority and _newer(o, w) for o in self._waiting.values()
            )
        ]
        for w in stale:
            del self._waiting[w.key]
        return stale

    def next(self) -> Waiting | None:
        """The job to take now (see the module's order), left waiting until ``done``."""
        if not self._waiting:
            return None
        return min(self._waiting.values(), key=lambda w: (not w.is_reward, -w.job.priority, w.job.created_ts, w.key))

    def done(self, w: Waiting) -> None:
        self._waiting.pop(w.key, None)

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition read from: the offset up to which nothing is waiting any more."""
        out = dict(self._read_to)
        for (tp, offset), _ in sorted(self._waiting.items(), key=lambda kv: kv[0][1], reverse=True):
            out[tp] = min(out[tp], offset)
        return out


def _newer(a: Waiting, b: Waiting) -> bool:
    return (a.job.created_ts, a.key[1]) > (b.job.created_ts, b.key[1]) and a.key != b.key
