"""Sample buffer and training-job trigger.

Consumes the sample topics; per topic, counts the samples not yet claimed by a job.
When the count reaches ``min_samples`` or the oldest unclaimed sample is older than
``max_age_s``, it emits one ``TrainJobRequest`` naming the exact half-open offset ranges
[from_offset, to_offset) per partition, and moves each partition's ``from`` past them.
The ranges live in the processor state (changelog), and the job, the state change and
the consumer offsets commit in one transaction: after a restart the same range is never
claimed twice. ``job_id`` is a hash of the ranges, so an at-least-once replay of a job
overwrites rather than duplicates (``trainer.jobs`` is keyed by job id).

Which jobs: ``BufferConfig.kinds`` per topic, where ``policy`` is the configured recipe
(``BufferConfig.recipe``: sft, dpo or grpo). The topics that name ``policy`` form one
group: a trigger on any of them claims the unclaimed samples of all of them, and the
policy job names every claimed range (an online DPO or GRPO job reads the SFT topic's
contexts and the preference topic's pairs together); each other kind of a claimed topic
(the Bradley–Terry ``reward`` job of samples.preference) gets a job over that topic's ranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic_core import to_json

from schemas import (
    SAMPLES_PREFERENCE,
    SAMPLES_REWARD,
    SAMPLES_SFT,
    TRAINER_JOBS,
    OffsetRange,
    PreferenceSample,
    RewardSample,
    SftSample,
    TrainJobRequest,
    parse_message,
)
from streams.processors._base import META, Output, PartitionMeta, PartitionState, ProcessorBase, SourcePartition
from streams.processors._codec import VersionedCodec
from streams.processors._events import from_ms, to_ms
from streams.processors._metrics import processor_metrics
from streams.processors.buffer_config import POLICY, BufferConfig

_MODELS: dict[str, type[RewardSample | SftSample | PreferenceSample]] = {
    SAMPLES_REWARD: RewardSample,
    SAMPLES_SFT: SftSample,
    SAMPLES_PREFERENCE: PreferenceSample,
}
_BUF = "buf"


@dataclass(slots=True)
class Unclaimed:
    """The samples of one sample partition that no job has claimed yet (entry ``buf``)."""

    from_offset: int
    """First unclaimed offset."""
    to_offset: int
    """One past the last sample seen (bad samples are dead-lettered; their offsets stay in range)."""
    count: int = 0
    """Valid unclaimed samples."""
    first_wall_ms: int | None = None
    """Wall clock at the first tick after the oldest unclaimed sample came: its age counts from here."""
    last_ts_ms: int = 0
    """Event time of the newest sample (the job's ``created_ts``)."""


class BufferCodec(VersionedCodec):
    """PartitionMeta and Unclaimed ↔ changelog bytes: version 2, ``[2, ...]`` arrays in
    field order; version 1, ``{"offset", "wm"}`` and ``{"from", "to", "n",
    "first_wall_ms", "last_ts_ms"}``."""

    version: ClassVar[int] = 2
    reads: ClassVar[frozenset[int]] = frozenset({1, 2})

    def new_meta(self) -> PartitionMeta:
        return PartitionMeta()

    def encode_meta(self, meta: PartitionMeta) -> bytes:
        return to_json([2, meta.offset, meta.watermark_ms])

    def decode_meta(self, raw: bytes) -> PartitionMeta:
        version, doc = self.read(META, raw)
        return PartitionMeta(doc["offset"], doc["wm"]) if version == 1 else PartitionMeta(doc[1], doc[2])

    def encode(self, key: str, value: Any) -> bytes:
        u: Unclaimed = value
        return to_json([2, u.from_offset, u.to_offset, u.count, u.first_wall_ms, u.last_ts_ms])

    def decode(self, key: str, raw: bytes) -> Any:
        version, doc = self.read(key, raw)
        if version == 1:
            return Unclaimed(doc["from"], doc.get("to", doc["from"]), doc["n"], doc["first_wall_ms"], doc["last_ts_ms"])
        _, from_offset, to_offset, count, first_wall_ms, last_ts_ms = doc
        return Unclaimed(from_offset, to_offset, count, first_wall_ms, last_ts_ms)


def job_id_for(kind: str, ranges: list[tuple[str, int, int, int]]) -> str:
    """Deterministic id of a job over ``ranges`` (topic, partition, from, to)."""
    digest = hashlib.sha256(json.dumps([kind, sorted(ranges)]).encode()).hexdigest()[:20]
    return f"{kind}-{digest}"


class BufferProcessor(ProcessorBase[PartitionMeta]):
    """Samples in, ``TrainJobRequest`` out. State per sample partition: its Unclaimed range."""

    name = "buffer"
    inputs: tuple[str, ...] = (SAMPLES_REWARD, SAMPLES_SFT, SAMPLES_PREFERENCE)
    codec = BufferCodec()

    def __init__(self, config: BufferConfig | None = None, topic_names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.config = config or BufferConfig()
        # A sample topic without a job kind is not trained on, so not read at all.
        self.inputs = tuple(t for t in type(self).inputs if t in self.config.kinds)
        # Job inputs name real topics (with namespace) so the trainer can read them back.
        self._names = topic_names or {}
        self._metrics = processor_metrics()
        self._now_ms = 0

    def _apply(
        self, source: SourcePartition, state: PartitionState[PartitionMeta], key: str | None, value: bytes
    ) -> list[Output]:
        offset = state.meta.offset
        buf: Unclaimed | None = state.entries.get(_BUF)
        if buf is None:
            buf = Unclaimed(offset, offset)
            state.put(_BUF, buf)
        else:
            state.touch(_BUF)
        buf.to_offset = offset + 1
        sample = parse_message(
            _MODELS[source.topic], value
        )  # bad samples are dead-lettered; their offset stays in range
        buf.count += 1
        buf.last_ts_ms = max(buf.last_ts_ms, to_ms(sample.ts))
        if buf.first_wall_ms is None and self._now_ms:
            buf.first_wall_ms = self._now_ms
        return self._maybe_trigger(source.topic)

    def advance(self, now_ms: int) -> list[Output]:
        self._now_ms = now_ms
        for source in self.owned():  # samples that came before the first tick start aging now
            state = self._parts[source]
            buf: Unclaimed | None = state.entries.get(_BUF)
            if buf is not None and buf.count and buf.first_wall_ms is None:
                buf.first_wall_ms = now_ms
                state.touch(_BUF)
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
        return sum(buf.count for _, buf in self._unclaimed(topic))

    def _unclaimed(self, topic: str) -> list[tuple[SourcePartition, Unclaimed]]:
        pairs = ((s, self._parts[s].entries.get(_BUF)) for s in self.owned() if s.topic == topic)
        return [(s, buf) for s, buf in pairs if buf is not None]

    def _maybe_trigger(self, topic: str, force: bool = False) -> list[Output]:
        bufs = [(s, buf) for s, buf in self._unclaimed(topic) if buf.count > 0]
        if not bufs:
            return []
        count = sum(b.count for _, b in bufs)
        oldest = min((b.first_wall_ms for _, b in bufs if b.first_wall_ms), default=None)
        if count >= self.config.min_samples_per_topic.get(topic, self.config.min_samples):
            trigger = "count"
        elif oldest is not None and self._now_ms and self._now_ms - oldest >= self.config.max_age_s * 1000:
            trigger = "age"
        elif force:
            trigger = "flush"
        else:
            return []
        # A policy trigger claims every policy topic at once: one policy job reads the
        # contexts and the pairs that are waiting, whichever topic reached its threshold.
        is_policy = POLICY in self.config.kinds[topic]
        group = self.config.policy_topics() if is_policy else (topic,)
        claimed: dict[str, list[tuple[str, int, int, int]]] = {}
        created_ms = 0
        for t in (t for t in self.inputs if t in group):
            pending = bufs if t == topic else [(s, b) for s, b in self._unclaimed(t) if b.count > 0]
            if not pending:
                continue
            name = self._names.get(t, t)
            claimed[t] = [(name, s.partition, b.from_offset, b.to_offset) for s, b in sorted(pending)]
            created_ms = max(created_ms, *(b.last_ts_ms for _, b in pending))
            for s, b in pending:
                b.from_offset, b.count, b.first_wall_ms = b.to_offset, 0, None
                self._parts[s].touch(_BUF)
        out = []
        if is_policy:
            out.append(self._job(self.config.recipe, sorted(r for rs in claimed.values() for r in rs), created_ms))
            self._metrics.jobs.labels(self.config.recipe, trigger).inc()
        for t, ranges in claimed.items():
            for kind in self.config.kinds[t]:
                if kind != POLICY:
                    out.append(self._job(kind, ranges, created_ms))
                    self._metrics.jobs.labels(kind, trigger).inc()
        return out

    def _job(self, kind: str, ranges: list[tuple[str, int, int, int]], created_ms: int) -> Output:
        # Not validated, as before: a kind the trainers do not know is theirs to refuse.
        job = TrainJobRequest.trusted(
            job_id=job_id_for(kind, ranges),
            kind=kind,
            model=self.config.model,
            inputs=tuple(OffsetRange(topic=t, partition=p, from_offset=f, to_offset=e) for t, p, f, e in ranges),
            created_ts=from_ms(created_ms),
            config={},
        )
        return Output(TRAINER_JOBS, job.job_id, job.to_json_bytes())
