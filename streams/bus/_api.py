"""The bus interface shared by the Kafka and embedded implementations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable

from schemas import TopicSpec


class TopicPartition(NamedTuple):
    topic: str
    partition: int


_NO_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class Record(NamedTuple):
    """One consumed message. ``key`` is the UTF-8 key (None when unkeyed).

    A NamedTuple rather than a frozen dataclass: consumers build hundreds of thousands
    per second and tuple construction is several times cheaper.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int
    headers: Mapping[str, bytes] = _NO_HEADERS

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


Offsets = Mapping[TopicPartition, int]
"""Next offset to read per partition (Kafka's committed-offset convention)."""

RebalanceCallback = Callable[[list[TopicPartition]], None]


@runtime_checkable
class Producer(Protocol):
    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: str | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one message. Delivery failures surface from flush() as StreamError.

        ``value=None`` is a tombstone (deletes the key of a compacted topic); only the
        Kafka bus takes one, the embedded bus raises TypeError.
        """

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything queued is delivered; raise StreamError on any failure."""

    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(self, offsets: Offsets, consumer: Consumer) -> None: ...
    def commit_transaction(self, timeout_s: float = 30.0) -> None: ...
    def abort_transaction(self, timeout_s: float = 30.0) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Consumer(Protocol):
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the consumer group for ``topics``; callbacks run inside consume()."""

    def assign(self, partitions: Mapping[TopicPartition, int]) -> None:
        """Read exactly these partitions from these offsets (no group membership)."""

    def consume(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""

    def commit(self, offsets: Offsets | None = None) -> None:
        """Synchronously commit ``offsets`` (default: the position after everything consumed)."""

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]: ...
    def position(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def assignment(self) -> list[TopicPartition]: ...
    def watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        """(low, high) offsets of a partition; high = offset of the next record written.
        ``cached``: what the last fetch reported, without a broker round trip (for metrics);
        negative when nothing has been fetched yet."""

    def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    """Factory of producers and consumers on one cluster (Kafka) or one process (embedded)."""

    def producer(self, transactional_id: str | None = None, **config: str | int) -> Producer: ...
    def consumer(self, group_id: str | None = None, **config: str | int) -> Consumer: ...
    def create_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        """Create missing topics; return the names created. Existing ones are left alone."""

    def partitions(self, topic: str) -> int: ...
    def close(self) -> None: ...
