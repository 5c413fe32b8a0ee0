"""Reading a job's exact sample ranges and the current serving baseline from the bus."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from schemas import (
    DeploymentState,
    OffsetRange,
    PreferenceSample,
    RewardSample,
    SftSample,
    TrainerError,
    deployment_record_adapter,
)
from streams import Bus, TopicPartition

log = logging.getLogger(__name__)

_SAMPLE = TypeAdapter(SftSample | PreferenceSample | RewardSample)


@dataclass
class JobInputs:
    """Samples of a job, by type, and how many records were unreadable."""

    sft: list[SftSample] = field(default_factory=list)
    preference: list[PreferenceSample] = field(default_factory=list)
    reward: list[RewardSample] = field(default_factory=list)
    invalid: int = 0

    def __len__(self) -> int:
        return len(self.sft) + len(self.preference) + len(self.reward)


def read_ranges(bus: Bus, ranges: Sequence[OffsetRange], timeout_s: float) -> JobInputs:
    """Exactly the records in ``ranges`` (half-open), read with ``assign()`` — no group,
    no commits. Raises TrainerError if a range is no longer (or not yet) readable."""
    out = JobInputs()
    wanted = {TopicPartition(r.topic, r.partition): r for r in ranges if r.count > 0}
    if not wanted:
        return out
    consumer = bus.consumer(None)
    try:
        for tp, r in wanted.items():
            low, high = consumer.watermarks(tp)
            if low > r.from_offset:
                raise TrainerError(
                    f"{tp.topic}[{tp.partition}] offsets from {r.from_offset} were deleted (low watermark {low})"
                )
            if high < r.to_offset:
                raise TrainerError(
                    f"{tp.topic}[{tp.partition}] has only {high} offsets; the job needs up to {r.to_offset}"
                )
        consumer.assign({tp: r.from_offset for tp, r in wanted.items()})
        done: set[TopicPartition] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(wanted):
            if time.monotonic() > deadline:
                raise TrainerError(f"timed out reading {sorted(set(wanted) - done)}")
            for rec in consumer.consume(500, 0.5):
                span = wanted.get(rec.tp)
                if span is None or not (span.from_offset <= rec.offset < span.to_offset):
                    continue
                try:
                    sample = _SAMPLE.validate_json(rec.value)
                except ValidationError:
                    out.invalid += 1
                    continue
                getattr(out, sample.kind if sample.kind != "preference" else "preference").append(sample)
            # Positions move past transaction markers too, so this ends on ranges that end in one.
            positions = consumer.position(list(wanted))
            done = {tp for tp, r in wanted.items() if positions.get(tp, -1) >= r.to_offset}
    finally:
        consumer.close()
    return out


def with_replay(bus: Bus, ranges: Sequence[OffsetRange], share: float, max_records: int) -> tuple[OffsetRange, ...]:
    """``ranges`` reaching back over earlier records of the same partitions: each range gets
    up to ``share`` of its own length before it (never below the partition's low watermark),
    all together at most ``max_records``. Deterministic for a given log, so a job redone
    after a crash reads the same records."""
    spans = [r for r in ranges if r.count > 0]
    want = [min(math.ceil(share * r.count), r.from_offset) for r in spans]
    total = sum(want)
    if total > max_records:
        want = [w * max_records // total for w in want]
    if not any(want):
        return tuple(ranges)
    consumer = bus.consumer(None)
    try:
        lows = {(r.topic, r.partition): consumer.watermarks(TopicPartition(r.topic, r.partition))[0] for r in spans}
    finally:
        consumer.close()
    reach = {id(r): max(lows[(r.topic, r.partition)], r.from_offset - w) for r, w in zip(spans, want, strict=True)}
    return tuple(r.model_copy(update={"from_offset": reach.get(id(r), r.from_offset)}) for r in ranges)


def latest_deployment(bus: Bus, topic: str, model: str, timeout_s: float = 10.0) -> DeploymentState | None:
    """The latest DeploymentState of ``model`` on the compacted serving.deployments topic."""
    consumer = bus.consumer(None)
    latest: DeploymentState | None = None
    try:
        ends: dict[TopicPartition, int] = {}
        for p in range(bus.partitions(topic)):
            tp = TopicPartition(topic, p)
            low, high = consumer.watermarks(tp)
            if high > low:
                ends[tp] = high
        if not ends:
            return None
        consumer.assign({tp: 0 for tp in ends})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for rec in consumer.consume(500, 0.5):
                try:
                    record = deployment_record_adapter.validate_json(rec.value)
                except ValidationError:
                    continue
                if isinstance(record, DeploymentState) and record.model == model:
                    latest = record
            positions = consumer.position(list(ends))
            if all(positions.get(tp, -1) >= end for tp, end in ends.items()):
                break
    finally:
        consumer.close()
    return latest
