"""What every processor shares: outputs, per-partition keyed state with dirty tracking,
and the offset bookkeeping that makes replays harmless.

A processor is transport-free. A runner feeds it records of its input topics, in order
per partition, and writes what it returns. State is a map of typed entries per source
partition (slotted dataclasses); the processor's StateCodec turns the entries changed
since the runner's last commit into bytes (the changelog), and bytes back into entries
on restore. The entry ``META`` (a PartitionMeta) records the last applied source offset,
so a record delivered twice is applied once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

META = "__meta__"
"""Entry holding the partition's PartitionMeta: last applied source offset, watermark."""


class Output(NamedTuple):
    """One message to write. ``topic`` is the base topic name (``engagement.signals``);
    the runner maps it through its ``Topics`` namespace."""

    topic: str
    key: str
    value: bytes


class SourcePartition(NamedTuple):
    """A partition of one input topic, named by the base topic name."""

    topic: str
    partition: int


@dataclass(slots=True)
class PartitionMeta:
    """The ``META`` entry of a source partition (processors extend it)."""

    offset: int = -1
    """Last applied source offset (-1 before the first)."""
    watermark_ms: int = 0
    """Largest event time seen, or forced by ``advance_to`` (event-time processors)."""


M = TypeVar("M", bound=PartitionMeta)


@dataclass
class PartitionState(Generic[M]):
    """Keyed entries of one source partition: typed state objects, which the processor's
    StateCodec turns into changelog bytes and back."""

    meta: M
    entries: dict[str, Any] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)

    def get(self, key: str, default: Any = None) -> Any:
        return self.entries.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.dirty.add(key)

    def delete(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.dirty.add(key)

    def touch(self, key: str) -> None:
        """Mark an entry mutated in place (or ``META``) as changed."""
        self.dirty.add(key)


@runtime_checkable
class Processor(Protocol):
    """A transport-free stream processor; runners drive it.

    Attributes:
        name: short name used in metrics, changelog topic and consumer group defaults.
        inputs: base names of the topics it consumes.
    """

    name: str
    inputs: tuple[str, ...]

    def restore(self, source: SourcePartition, entries: Mapping[str, bytes]) -> None:
        """Take ownership of ``source`` with the given persisted entries (may be empty)."""

    def drop(self, source: SourcePartition) -> None:
        """Forget ``source`` (revoked, or being rewound after an aborted transaction)."""

    def owned(self) -> list[SourcePartition]: ...

    def last_offset(self, source: SourcePartition) -> int:
        """Last applied source offset of ``source`` (-1 before the first)."""

    def process(self, source: SourcePartition, offset: int, key: str | None, value: bytes) -> list[Output]:
        """Apply one record. A replay (offset <= last_offset) returns [] and changes nothing.

        Raises:
            SchemaError: the record is bad input; the offset still counts as applied.
        """

    def advance(self, now_ms: int) -> list[Output]:
        """Timer hook: wall-clock time passed (triggers that depend on age)."""

    def advance_to(self, ts_ms: int) -> list[Output]:
        """Force event time to ``ts_ms`` on every owned partition, firing timers and closing windows."""

    def take_changes(self, source: SourcePartition) -> dict[str, bytes | None]:
        """Entries of ``source`` changed since the last call; the runner persists them."""


class ProcessorBase(Generic[M]):
    """Partition ownership, restore, change tracking and offset skipping.

    Subclasses set ``codec`` (their state's StateCodec) and implement ``_apply`` (and
    optionally ``_on_restore``, ``_advance``, ``_advance_to``).
    """

    name = "processor"
    inputs: tuple[str, ...] = ()
    codec: StateCodec[M]

    def __init__(self) -> None:
        self._parts: dict[SourcePartition, PartitionState[M]] = {}

    # -- ownership -------------------------------------------------------------------
    def restore(self, source: SourcePartition, entries: Mapping[str, bytes]) -> None:
        codec = self.codec
        raw_meta = entries.get(META)
        meta = codec.new_meta() if raw_meta is None else codec.decode_meta(raw_meta)
        state = PartitionState(meta, {k: codec.decode(k, v) for k, v in entries.items() if k != META})
        # Entries of an earlier state version are rewritten in the current one at the next
        # commit, so a version's reader can go once every changelog has been through one.
        state.dirty.update(k for k, v in entries.items() if not codec.is_current(v))
        self._parts[source] = state
        self._on_restore(source, state)

    def drop(self, source: SourcePartition) -> None:
        self._parts.pop(source, None)
        self._on_drop(source)

    def owned(self) -> list[SourcePartition]:
        return sorted(self._parts)

    def state(self, source: SourcePartition) -> PartitionState[M]:
        state = self._parts.get(source)
        if state is None:  # processing without an explicit restore: start empty
            state = self._parts[source] = PartitionState(self.codec.new_meta())
            self._on_restore(source, state)
        return state

    def last_offset(self, source: SourcePartition) -> int:
        state = self._parts.get(source)
        return -1 if state is None else state.meta.offset

    def take_changes(self, source: SourcePartition) -> dict[str, bytes | None]:
        """Serialised entries changed since the last call (None = deleted)."""
        state = self._parts.get(source)
        if state is None:
            return {}
        codec, entries = self.codec, state.entries
        out: dict[str, bytes | None] = {}
        for key in sorted(state.dirty):
            if key == META:
                out[key] = codec.encode_meta(state.meta)
            else:
                value = entries.get(key)
                out[key] = None if value is None else codec.encode(key, value)
        state.dirty.clear()
        return out

    def snapshot(self, source: SourcePartition) -> dict[str, Any]:
        """Every entry of ``source`` as the JSON its changelog holds (for tests and inspection)."""
        state = self._parts.get(source)
        if state is None:
            return {}
        codec = self.codec
        out = {META: json.loads(codec.encode_meta(state.meta))}
        out.update((k, json.loads(codec.encode(k, v))) for k, v in state.entries.items())
        return out

    # -- records ---------------------------------------------------------------------
    def process(self, source: SourcePartition, offset: int, key: str | None, value: bytes) -> list[Output]:
        state = self._parts.get(source) or self.state(source)
        meta = state.meta
        if offset <= meta.offset:
            return []
        meta.offset = offset
        state.dirty.add(META)
        return self._apply(source, state, key, value)

    def advance(self, now_ms: int) -> list[Output]:
        out: list[Output] = []
        for source in self.owned():
            out.extend(self._advance(source, self._parts[source], now_ms))
        return out

    def advance_to(self, ts_ms: int) -> list[Output]:
        out: list[Output] = []
        for source in self.owned():
            out.extend(self._advance_to(source, self._parts[source], ts_ms))
        return out

    # -- hooks -----------------------------------------------------------------------
    def _apply(self, source: SourcePartition, state: PartitionState[M], key: str | None, value: bytes) -> list[Output]:
        raise NotImplementedError

    def _on_restore(self, source: SourcePartition, state: PartitionState[M]) -> None:
        pass

    def _on_drop(self, source: SourcePartition) -> None:
        pass

    def _advance(self, source: SourcePartition, state: PartitionState[M], now_ms: int) -> list[Output]:
        return []

    def _advance_to(self, source: SourcePartition, state: PartitionState[M], ts_ms: int) -> list[Output]:
        return []


class EventTimeProcessor(ProcessorBase[M]):
    """A processor with event-time timers: forcing event time forward moves a partition's
    watermark (never back) and fires what became due (``_fire``)."""

    def _fire(self, source: SourcePartition, state: PartitionState[M], wm: int, out: list[Output]) -> None:
        raise NotImplementedError

    def _advance_to(self, source: SourcePartition, state: PartitionState[M], ts_ms: int) -> list[Output]:
        out: list[Output] = []
        meta = state.meta
        if ts_ms > meta.watermark_ms:
            meta.watermark_ms = ts_ms
            state.touch(META)
            self._fire(source, state, ts_ms, out)
        return out


class StateCodec(Protocol[M]):
    """A processor's state ↔ changelog bytes, one entry at a time, in a versioned format
    (see ``streams.processors._codec``)."""

    def new_meta(self) -> M:
        """The META entry of a partition without state."""

    def encode_meta(self, meta: M) -> bytes: ...

    def decode_meta(self, raw: bytes) -> M:
        """META as written by this or an earlier state version."""

    def encode(self, key: str, value: Any) -> bytes: ...

    def decode(self, key: str, raw: bytes) -> Any:
        """The entry ``key`` as written by this or an earlier state version."""

    def is_current(self, raw: bytes) -> bool:
        """Whether ``raw`` is in the version this codec writes."""


def outputs_by_topic(outputs: Iterable[Output]) -> dict[str, list[Output]]:
    grouped: dict[str, list[Output]] = {}
    for out in outputs:
        grouped.setdefault(out.topic, []).append(out)
    return grouped
