"""In-process bus with Kafka's semantics: partitions by murmur2 of the key, per-partition
offsets, consumer groups with committed offsets and rebalancing, transactions whose
records and offsets become visible together (read_committed), and librdkafka's
``message.max.bytes`` (a larger message is refused by ``produce``). Used by `flywheel demo` and
tests; nothing here survives the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from schemas import MessageTooLargeError, StreamError, TopicSpec
from streams.bus._api import Consumer, Offsets, RebalanceCallback, Record, TopicPartition
from streams.bus._murmur2 import partition_for_key


@dataclass
class _Group:
    members: list[EmbeddedConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class EmbeddedBus:
    """One in-memory cluster. Thread-safe; blocking consumers wake on new records.

    Args:
        max_message_bytes: producers' default ``message.max.bytes`` (librdkafka's default);
            a producer created with ``message.max.bytes`` uses its own.
    """

    def __init__(self, default_partitions: int = 1, max_message_bytes: int = 1_000_000) -> None:
        self.max_message_bytes = max_message_bytes
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._epochs: dict[str, int] = {}
        self._rr = 0
        self.default_partitions = default_partitions

    # -- administration ------------------------------------------------------------
    def create_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        created = []
        with self._lock:
            for spec in specs:
                if spec.name not in self._logs:
                    self._logs[spec.name] = [[] for _ in range(spec.partitions)]
                    created.append(spec.name)
        return created

    def partitions(self, topic: str) -> int:
        return len(self._log(topic))

    def _log(self, topic: str) -> list[list[Record]]:
        try:
            return self._logs[topic]
        except KeyError:
            raise StreamError(f"unknown topic {topic!r}; run `flywheel topics create`", topic=topic) from None

    def producer(self, transactional_id: str | None = None, **config: str | int) -> EmbeddedProducer:
        max_bytes = int(config.get("message.max.bytes", self.max_message_bytes))
        return EmbeddedProducer(self, transactional_id, max_bytes)

    def consumer(self, group_id: str | None = None, **config: str | int) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group_id, str(config.get("auto.offset.reset", "earliest")))

    def close(self) -> None:
        pass

    # -- used by producers and consumers -----------------------------------------------
    def _partition(self, topic: str, key: str | None, partition: int | None) -> int:
        n = len(self._log(topic))
        if partition is not None:
            if not 0 <= partition < n:
                raise StreamError(f"partition {partition} out of range for {topic!r} ({n} partitions)", topic=topic)
            return partition
        if key is None:
            self._rr += 1
            return self._rr % n
        return partition_for_key(key.encode(), n)

    def _append(self, batch: list[tuple[str, int, str | None, bytes, Mapping[str, bytes]]]) -> None:
        now_ms = int(time.time() * 1000)
        with self._changed:
            for topic, partition, key, value, headers in batch:
                log = self._logs[topic][partition]
                log.append(Record(topic, partition, len(log), key, value, now_ms, dict(headers)))
            self._changed.notify_all()

    def _fence(self, transactional_id: str) -> int:
        with self._lock:
            epoch = self._epochs.get(transactional_id, 0) + 1
            self._epochs[transactional_id] = epoch
            return epoch

    def _check_epoch(self, transactional_id: str, epoch: int) -> None:
        if self._epochs.get(transactional_id) != epoch:
            raise StreamError(f"producer fenced: a newer producer uses transactional.id {transactional_id!r}")

    def _join(self, group_id: str, member: EmbeddedConsumer) -> None:
        with self._lock:
            group = self._groups.setdefault(group_id, _Group())
            group.members.append(member)
            self._rebalance(group)

    def _leave(self, group_id: str, member: EmbeddedConsumer) -> None:
        with self._lock:
            group = self._groups.get(group_id)
            if group and member in group.members:
                group.members.remove(member)
                self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Spread every subscribed partition over the members, round robin, in join order."""
        group.generation += 1
        topics = sorted({t for m in group.members for t in m._topics})
        tps = [TopicPartition(t, p) for t in topics for p in range(len(self._log(t)))]
        plan: dict[int, list[TopicPartition]] = {id(m): [] for m in group.members}
        subscribers = {t: [m for m in group.members if t in m._topics] for t in topics}
        for i, tp in enumerate(tps):
            members = subscribers[tp.topic]
            plan[id(members[i % len(members)])].append(tp)
        for member in group.members:
            member._pending_assignment = plan[id(member)]
        self._changed.notify_all()


class EmbeddedProducer:
    def __init__(self, bus: EmbeddedBus, transactional_id: str | None, max_message_bytes: int = 1_000_000) -> None:
        self._bus = bus
        self._max_message_bytes = max_message_bytes
        self._tid = transactional_id
        self._epoch = bus._fence(transactional_id) if transactional_id else 0
        self._txn: list[tuple[str, int, str | None, bytes, Mapping[str, bytes]]] | None = None
        self._txn_offsets: dict[str, dict[TopicPartition, int]] = {}
        self._lock = threading.Lock()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: str | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        size = len(value) + (len(key.encode()) if key else 0)
        if headers:
            size += sum(len(name.encode()) + len(v) for name, v in headers.items())
        if size > self._max_message_bytes:
            raise MessageTooLargeError(topic, size, self._max_message_bytes)
        with self._bus._lock:
            p = self._bus._partition(topic, key, partition)
        item = (topic, p, key, bytes(value), headers or {})
        with self._lock:
            if self._txn is not None:
                self._txn.append(item)
                return
        self._bus._append([item])

    def flush(self, timeout_s: float = 30.0) -> None:
        pass  # appends are synchronous

    def begin_transaction(self) -> None:
        if not self._tid:
            raise StreamError("begin_transaction() needs a producer created with a transactional_id")
        with self._lock:
            if self._txn is not None:
                raise StreamError("a transaction is already open")
            self._txn, self._txn_offsets = [], {}

    def send_offsets_to_transaction(self, offsets: Offsets, consumer: Consumer) -> None:
        group_id = getattr(consumer, "group_id", None)
        if not group_id:
            raise StreamError("send_offsets_to_transaction needs a consumer in a group")
        with self._lock:
            if self._txn is None:
                raise StreamError("no open transaction")
            self._txn_offsets.setdefault(group_id, {}).update(offsets)

    def commit_transaction(self, timeout_s: float = 30.0) -> None:
        with self._bus._changed:
            self._bus._check_epoch(self._tid or "", self._epoch)
            with self._lock:
                if self._txn is None:
                    raise StreamError("no open transaction")
                batch, offsets = self._txn, self._txn_offsets
                self._txn, self._txn_offsets = None, {}
            self._bus._append(batch)
            for group_id, group_offsets in offsets.items():
                self._bus._groups.setdefault(group_id, _Group()).committed.update(group_offsets)

    def abort_transaction(self, timeout_s: float = 30.0) -> None:
        with self._lock:
            self._txn, self._txn_offsets = None, {}

    def close(self) -> None:
        self.abort_transaction()


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, group_id: str | None, auto_offset_reset: str) -> None:
        self._bus = bus
        self.group_id = group_id
        self._reset_latest = auto_offset_reset == "latest"
        self._topics: tuple[str, ...] = ()
        self._positions: dict[TopicPartition, int] = {}
        self._pending_assignment: list[TopicPartition] | None = None
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._closed = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        if not self.group_id:
            raise StreamError("subscribe() needs a group_id; use assign() to read without a group")
        for t in topics:
            self._bus._log(t)
        self._topics = tuple(topics)
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._bus._join(self.group_id, self)

    def assign(self, partitions: Mapping[TopicPartition, int]) -> None:
        self._positions = dict(partitions)

    def _apply_rebalance(self) -> None:
        pending = self._pending_assignment
        if pending is None:
            return
        self._pending_assignment = None
        revoked = [tp for tp in self._positions if tp not in pending]
        if revoked and self._on_revoke:
            self._on_revoke(revoked)
        group = self._bus._groups[self.group_id or ""]
        kept = {tp: pos for tp, pos in self._positions.items() if tp in pending}
        new = [tp for tp in pending if tp not in kept]
        for tp in new:
            committed = group.committed.get(tp)
            if committed is None:
                committed = len(self._bus._logs[tp.topic][tp.partition]) if self._reset_latest else 0
            kept[tp] = committed
        self._positions = kept
        if new and self._on_assign:
            self._on_assign(new)

    def consume(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        with self._bus._changed:
            while True:
                if self._closed:
                    return []
                self._apply_rebalance()
                out: list[Record] = []
                for tp, pos in self._positions.items():
                    log = self._bus._logs[tp.topic][tp.partition]
                    if pos < len(log):
                        take = log[pos : pos + max_records - len(out)]
                        out.extend(take)
                        self._positions[tp] = pos + len(take)
                        if len(out) >= max_records:
                            break
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._bus._changed.wait(remaining)

    def commit(self, offsets: Offsets | None = None) -> None:
        if not self.group_id:
            raise StreamError("commit() needs a consumer in a group")
        with self._bus._lock:
            group = self._bus._groups.setdefault(self.group_id, _Group())
            group.committed.update(offsets if offsets is not None else self._positions)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        group = self._bus._groups.get(self.group_id or "")
        return {tp: (group.committed.get(tp) if group else None) for tp in partitions}

    def position(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._positions[tp] for tp in partitions if tp in self._positions}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def assignment(self) -> list[TopicPartition]:
        with self._bus._lock:
            self._apply_rebalance()
            return list(self._positions)

    def watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        with self._bus._lock:
            return 0, len(self._bus._log(tp.topic)[tp.partition])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.group_id and self._topics:
            self._bus._leave(self.group_id, self)
