"""What every processor shares: outputs, per-partition keyed state with dirty tracking,
and the offset bookkeeping that makes replays harmless.

A processor is transport-free. A runner feeds it records of its input topics, in order
per partition, and writes what it returns. State is a map of JSON-able entries per
source partition; the runner persists the entries changed since its last commit (the
changelog) and hands them back on restore. The entry ``META`` records the last applied
source offset, so a record delivered twice is applied once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from pydantic_core import to_json

META = "__meta__"
"""Entry holding the last applied source offset and the partition's event-time watermark."""


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


@dataclass
class PartitionState:
    """Keyed entries of one source partition. Values must stay JSON-able."""

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
        """Mark an entry mutated in place as changed."""
        self.dirty.add(key)

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.entries.get(META)
        if meta is None:
            meta = {"offset": -1, "wm": 0}
            self.entries[META] = meta
        return meta

    def take_changes(self) -> dict[str, bytes | None]:
        """Serialised entries changed since the last call (None = deleted)."""
        out: dict[str, bytes | None] = {}
        for key in sorted(self.dirty):
            value = self.entries.get(key)
            out[key] = None if value is None else to_json(value)
        self.dirty.clear()
        return out


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


class ProcessorBase:
    """Partition ownership, restore, change tracking and offset skipping.

    Subclasses implement ``_apply`` (and optionally ``_on_restore``, ``_advance``,
    ``_advance_to``).
    """

    name = "processor"
    inputs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._parts: dict[SourcePartition, PartitionState] = {}

    # -- ownership -------------------------------------------------------------------
    def restore(self, source: SourcePartition, entries: Mapping[str, bytes]) -> None:
        state = PartitionState({k: json.loads(v) for k, v in entries.items()})
        self._parts[source] = state
        self._on_restore(source, state)

    def drop(self, source: SourcePartition) -> None:
        self._parts.pop(source, None)
        self._on_drop(source)

    def owned(self) -> list[SourcePartition]:
        return sorted(self._parts)

    def state(self, source: SourcePartition) -> PartitionState:
        state = self._parts.get(source)
        if state is None:  # processing without an explicit restore: start empty
            state = self._parts[source] = PartitionState()
            self._on_restore(source, state)
        return state

    def last_offset(self, source: SourcePartition) -> int:
        state = self._parts.get(source)
        return -1 if state is None else int(state.meta["offset"])

    def take_changes(self, source: SourcePartition) -> dict[str, bytes | None]:
        state = self._parts.get(source)
        return {} if state is None else state.take_changes()

    def snapshot(self, source: SourcePartition) -> dict[str, Any]:
        """A JSON-able copy of every entry of ``source`` (for tests and inspection)."""
        state = self._parts.get(source)
        return {} if state is None else json.loads(json.dumps(state.entries))

    # -- records ---------------------------------------------------------------------
    def process(self, source: SourcePartition, offset: int, key: str | None, value: bytes) -> list[Output]:
        state = self._parts.get(source) or self.state(source)
        meta = state.entries.get(META) or state.meta
        if offset <= meta["offset"]:
            return []
        meta["offset"] = offset
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
    def _apply(self, source: SourcePartition, state: PartitionState, key: str | None, value: bytes) -> list[Output]:
        raise NotImplementedError

    def _on_restore(self, source: SourcePartition, state: PartitionState) -> None:
        pass

    def _on_drop(self, source: SourcePartition) -> None:
        pass

    def _advance(self, source: SourcePartition, state: PartitionState, now_ms: int) -> list[Output]:
        return []

    def _advance_to(self, source: SourcePartition, state: PartitionState, ts_ms: int) -> list[Output]:
        return []


class EventTimeProcessor(ProcessorBase):
    """A processor with event-time timers: forcing event time forward moves a partition's
    watermark (never back) and fires what became due (``_fire``)."""

    def _fire(self, source: SourcePartition, state: PartitionState, wm: int, out: list[Output]) -> None:
        raise NotImplementedError

    def _advance_to(self, source: SourcePartition, state: PartitionState, ts_ms: int) -> list[Output]:
        out: list[Output] = []
        meta = state.meta
        if ts_ms > meta["wm"]:
            meta["wm"] = ts_ms
            state.touch(META)
            self._fire(source, state, ts_ms, out)
        return out


def outputs_by_topic(outputs: Iterable[Output]) -> dict[str, list[Output]]:
    grouped: dict[str, list[Output]] = {}
    for out in outputs:
        grouped.setdefault(out.topic, []).append(out)
    return grouped
