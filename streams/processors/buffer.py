"""Sample buffer and training-job trigger.

Consumes the sample topics; per topic, counts the samples not yet claimed by a job.
When the count reaches ``min_samples`` or the oldest unclaimed sample is older than
``max_age_s``, it emits one ``TrainJobRequest`` naming the exact half-open offset ranges
[from_offset, to_offset) per partition, and moves each partition's ``from`` past them.
The ranges live in the processor state (changelog), and the job, the state change and
the consumer offsets commit in one transaction: after a restart the same range is never
claimed twice. ``job_id`` is a hash of the ranges, so an at-least-once replay of a job
overwrites rather than duplicates (``trainer.jobs`` is keyed by job id).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from schemas import (
    SAMPLES_PREFERENCE,
    SAMPLES_REWARD,
    SAMPLES_SFT,
    SCHEMA_VERSION,
    TRAINER_JOBS,
    PreferenceSample,
    RewardSample,
    SftSample,
    parse_message,
)
from streams.processors._base import META, Output, PartitionState, ProcessorBase, SourcePartition
from streams.processors._events import dumps, iso_ms, to_ms
from streams.processors._metrics import processor_metrics
from streams.processors.buffer_config import BufferConfig

_MODELS: dict[str, type[RewardSample | SftSample | PreferenceSample]] = {
    SAMPLES_REWARD: RewardSample,
    SAMPLES_SFT: SftSample,
    SAMPLES_PREFERENCE: PreferenceSample,
}


def job_id_for(kind: str, ranges: list[tuple[str, int, int, int]]) -> str:
    """Deterministic id of a job over ``ranges`` (topic, partition, from, to)."""
    digest = hashlib.sha256(json.dumps([kind, sorted(ranges)]).encode()).hexdigest()[:20]
    return f"{kind}-{digest}"


class BufferProcessor(ProcessorBase):
    """Samples in, ``TrainJobRequest`` out. State per sample partition: ``from`` (first
    unclaimed offset), ``n`` (unclaimed count), ``first_wall_ms`` and ``last_ts_ms``."""

    name = "buffer"
    inputs: tuple[str, ...] = (SAMPLES_REWARD, SAMPLES_SFT, SAMPLES_PREFERENCE)

    def __init__(self, config: BufferConfig | None = None, topic_names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.config = config or BufferConfig()
        # A sample topic without a job kind is not trained on, so not read at all.
        self.inputs = tuple(t for t in type(self).inputs if t in self.config.kinds)
        # Job inputs name real topics (with namespace) so the trainer can read them back.
        self._names = topic_names or {}
        self._metrics = processor_metrics()
        self._now_ms = 0

    def _apply(self, source: SourcePartition, state: PartitionState, key: str | None, value: bytes) -> list[Output]:
        offset = state.entries[META]["offset"]
        buf = state.entries.get("buf")
        if buf is None:
            buf = {"from": offset, "n": 0, "first_wall_ms": None, "last_ts_ms": 0}
            state.put("buf", buf)
        else:
            state.touch("buf")
        buf["to"] = offset + 1
        sample = parse_message(
            _MODELS[source.topic], value
        )  # bad samples are dead-lettered; their offset stays in range
        buf["n"] += 1
        buf["last_ts_ms"] = max(buf["last_ts_ms"], to_ms(sample.ts))
        if buf["first_wall_ms"] is None and self._now_ms:
            buf["first_wall_ms"] = self._now_ms
        return self._maybe_trigger(source.topic)

    def _advance(self, source: SourcePartition, state: PartitionState, now_ms: int) -> list[Output]:
        return []

    def advance(self, now_ms: int) -> list[Output]:
        self._now_ms = now_ms
        for source in self.owned():  # samples that came before the first tick start aging now
            state = self._parts[source]
            buf = state.entries.get("buf")
            if buf is not None and buf["n"] and buf["first_wall_ms"] is None:
                buf["first_wall_ms"] = now_ms
                state.touch("buf")
        out: list[Output] = []
        for topic in self.inputs:
            out.extend(self._maybe_trigger(topic))
        return out

    def advance_to(self, ts_ms: int) -> list[Output]:
        """Flush: request jobs for every topic with unclaimed samples, whatever their count."""
        out: list[Output] = []
        for topic in self.inputs:
            out.extend(self._maybe_trigger(topic, force=True))
        return out

    def pending(self, topic: str) -> int:
        """Unclaimed samples of ``topic`` (base name) on the owned partitions."""
        return sum(self._parts[s].entries.get("buf", {}).get("n", 0) for s in self.owned() if s.topic == topic)

    def _maybe_trigger(self, topic: str, force: bool = False) -> list[Output]:
        bufs = [
            (s, self._parts[s].entries["buf"])
            for s in self.owned()
            if s.topic == topic and self._parts[s].entries.get("buf", {}).get("n", 0) > 0
        ]
        if not bufs:
            return []
        count = sum(b["n"] for _, b in bufs)
        oldest = min((b["first_wall_ms"] for _, b in bufs if b["first_wall_ms"]), default=None)
        if count >= self.config.min_samples_per_topic.get(topic, self.config.min_samples):
            trigger = "count"
        elif oldest is not None and self._now_ms and self._now_ms - oldest >= self.config.max_age_s * 1000:
            trigger = "age"
        elif force:
            trigger = "flush"
        else:
            return []
        name = self._names.get(topic, topic)
        ranges = [(name, s.partition, b["from"], b["to"]) for s, b in sorted(bufs)]
        created = max(b["last_ts_ms"] for _, b in bufs)
        for s, b in bufs:
            b["from"], b["n"], b["first_wall_ms"] = b["to"], 0, None
            self._parts[s].touch("buf")
        out = []
        for kind in self.config.kinds[topic]:
            job: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "job_id": job_id_for(kind, ranges),
                "kind": kind,
                "model": self.config.model,
                "base_version": None,
                "inputs": [{"topic": t, "partition": p, "from_offset": f, "to_offset": e} for t, p, f, e in ranges],
                "created_ts": iso_ms(created),
                "config": {},
            }
            self._metrics.jobs.labels(kind, trigger).inc()
            out.append(Output(TRAINER_JOBS, job["job_id"], dumps(job)))
        return out
