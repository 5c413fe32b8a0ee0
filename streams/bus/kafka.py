"""The Kafka bus on confluent-kafka (librdkafka).

Producers: idempotent, acks=all, murmur2 partitioning (what Java clients, aiokafka and
Faust use), lz4 batches; delivery failures are collected and raised from flush().
Consumers: manual commits, read_committed, batch consume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from confluent_kafka import (
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import (
    Consumer as _RawConsumer,
)
from confluent_kafka import (
    Producer as _RawProducer,
)
from confluent_kafka import TopicPartition as _RawTP
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import MessageTooLargeError, StreamError, TopicSpec
from streams.bus._api import _NO_HEADERS, Consumer, Offsets, RebalanceCallback, Record, TopicPartition
from streams.bus.kafka_settings import KafkaSettings

log = logging.getLogger(__name__)

# Records are built with the tuple constructor itself: the NamedTuple's generated __new__ is
# a Python-level call, a third of the cost of wrapping each consumed message.
_new_record = tuple.__new__

_LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``: larger messages are refused by produce()."""


def _raise(exc: KafkaException, what: str, topic: str | None = None) -> StreamError:
    err = exc.args[0] if exc.args else None
    retriable = bool(isinstance(err, KafkaError) and err.retriable())
    return StreamError(f"{what}: {err}", topic=topic, retriable=retriable)


class KafkaBus:
    def __init__(self, settings: KafkaSettings | None = None) -> None:
        self.settings = settings or KafkaSettings()
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.settings.client_config())
        return self._admin

    def producer(self, transactional_id: str | None = None, **config: str | int) -> KafkaProducer:
        return KafkaProducer(self.settings, transactional_id, config)

    def consumer(self, group_id: str | None = None, **config: str | int) -> KafkaConsumer:
        return KafkaConsumer(self.settings, group_id, config)

    def create_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        specs = list(specs)
        existing = set(self.admin.list_topics(timeout=10).topics)
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self.admin.create_topics(
            [
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.kafka_config())
                for s in missing
            ],
            operation_timeout=30,
        )
        created = []
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent creator won
                    raise _raise(exc, "create topic", name) from None
        self._wait_until_visible(created)
        return created

    def _wait_until_visible(self, names: list[str], timeout_s: float = 15.0) -> None:
        """Creation returns once the controller has the topics; the broker answering metadata
        requests may learn of them a moment later. Wait until each topic and every partition's
        leader is in the metadata, so that callers can use the topics at once."""
        deadline = time.monotonic() + timeout_s
        pending = set(names)
        while pending:
            topics = self.admin.list_topics(timeout=10).topics
            pending = {
                n
                for n in pending
                if n not in topics
                or topics[n].error is not None
                or any(p.leader < 0 for p in topics[n].partitions.values())
            }
            if not pending:
                return
            if time.monotonic() > deadline:
                raise StreamError(
                    f"created topics not visible after {timeout_s:.0f}s: {sorted(pending)}", retriable=True
                )
            time.sleep(0.05)

    def delete_topics(self, names: Iterable[str]) -> None:
        for name, future in self.admin.delete_topics(list(names), operation_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise _raise(exc, "delete topic", name) from None

    def partitions(self, topic: str) -> int:
        meta = self.admin.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise StreamError(f"unknown topic {topic!r}; run `flywheel topics create`", topic=topic)
        return len(meta.partitions)

    def close(self) -> None:
        self._admin = None


class KafkaProducer:
    def __init__(
        self, settings: KafkaSettings, transactional_id: str | None, overrides: Mapping[str, str | int]
    ) -> None:
        # librdkafka properties, plus the error callback the client calls from poll().
        conf: dict[str, str | int | float | bool | Callable[[KafkaError], None]] = {
            **settings.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": settings.linger_ms,
            "compression.type": settings.compression_type,
            "error_cb": self._on_error,
        }
        if transactional_id:
            conf["transactional.id"] = transactional_id
        conf.update(overrides)
        max_bytes = overrides.get("message.max.bytes") or settings.extra.get("message.max.bytes")
        self._max_message_bytes = int(max_bytes or _LIBRDKAFKA_MESSAGE_MAX_BYTES)
        self._producer = _RawProducer(conf)
        self._errors: list[str] = []
        self._lock = threading.Lock()
        # A transaction's commit fails when any of its messages was not delivered, so a
        # transactional producer needs no per-message delivery callback (a Python call per
        # message); the others collect delivery failures for flush().
        self._on_delivery_cb = None if transactional_id else self._on_delivery
        self._unpolled = 0
        if transactional_id:
            try:
                self._producer.init_transactions(30)
            except KafkaException as exc:
                raise _raise(exc, "init_transactions") from None

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            with self._lock:
                self._errors.append(f"fatal producer error: {err}")
        else:
            log.warning("kafka producer: %s", err)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(f"delivery to {msg.topic()}[{msg.partition()}] failed: {err}")

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: str | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None:
        while True:
            try:
                if partition is None and not headers:  # the hot path: no keyword dicts to build
                    self._producer.produce(topic, value, key, on_delivery=self._on_delivery_cb)
                else:
                    self._producer.produce(
                        topic,
                        value,
                        key,
                        # -1 is librdkafka's "unassigned": the partitioner picks (produce()'s default).
                        partition=-1 if partition is None else partition,
                        headers=dict(headers) if headers else None,
                        on_delivery=self._on_delivery_cb,
                    )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain, then retry
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    size = len(value or b"") + len(key.encode() if key else b"")
                    size += sum(len(name.encode()) + len(v) for name, v in (headers or {}).items())
                    raise MessageTooLargeError(topic, size, self._max_message_bytes) from None
                raise _raise(exc, "produce", topic) from None
        # Serve delivery reports and errors now and then, not per message.
        self._unpolled += 1
        if self._unpolled >= 256:
            self._unpolled = 0
            self._producer.poll(0)

    def _raise_errors(self) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise StreamError(f"{len(errors)} message(s) not delivered; first: {errors[0]}")

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        self._raise_errors()
        if remaining:
            raise StreamError(f"{remaining} message(s) still undelivered after {timeout_s}s", retriable=True)

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise _raise(exc, "begin_transaction") from None

    def send_offsets_to_transaction(self, offsets: Offsets, consumer: Consumer) -> None:
        if not isinstance(consumer, KafkaConsumer):
            raise StreamError("send_offsets_to_transaction needs a KafkaConsumer")
        tps = [_RawTP(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            self._producer.send_offsets_to_transaction(tps, consumer._consumer.consumer_group_metadata(), 30)
        except KafkaException as exc:
            raise _raise(exc, "send_offsets_to_transaction") from None

    def commit_transaction(self, timeout_s: float = 30.0) -> None:
        try:
            self._producer.commit_transaction(timeout_s)
        except KafkaException as exc:
            raise _raise(exc, "commit_transaction") from None
        self._raise_errors()

    def abort_transaction(self, timeout_s: float = 30.0) -> None:
        try:
            self._producer.abort_transaction(timeout_s)
        except KafkaException as exc:
            raise _raise(exc, "abort_transaction") from None
        with self._lock:
            self._errors.clear()

    def close(self) -> None:
        self._producer.flush(10)


class KafkaConsumer:
    def __init__(self, settings: KafkaSettings, group_id: str | None, overrides: Mapping[str, str | int]) -> None:
        self.group_id = group_id
        conf: dict[str, str | int | float | bool] = {
            **settings.client_config(),
            # Without a group, librdkafka still wants an id; it is never used for commits.
            "group.id": group_id or f"{settings.client_id}-nogroup",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": 100,
        }
        conf.update(overrides)
        self._consumer = _RawConsumer(conf)
        self._closed = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        def assigned(_c: object, parts: list[_RawTP]) -> None:
            if on_assign:
                on_assign([TopicPartition(p.topic, p.partition) for p in parts])

        def revoked(_c: object, parts: list[_RawTP]) -> None:
            if on_revoke:
                on_revoke([TopicPartition(p.topic, p.partition) for p in parts])

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def assign(self, partitions: Mapping[TopicPartition, int]) -> None:
        self._consumer.assign([_RawTP(tp.topic, tp.partition, off) for tp, off in partitions.items()])

    def consume(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        try:
            messages = self._consumer.consume(max_records, timeout_s)
        except KafkaException as exc:
            raise _raise(exc, "consume") from None
        out = []
        for m in messages:
            err = m.error()
            if err is not None:
                # Only fatal errors end a consumer. The rest (a topic whose leader is not
                # elected yet, a broker restarting, an end-of-partition notice) librdkafka
                # recovers from by itself: a long-running processor must outlive them.
                if err.fatal():
                    raise StreamError(f"consume: {err}", topic=m.topic())
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka consumer (%s): %s", m.topic(), err)
                continue
            key = m.key()
            headers = m.headers()
            out.append(
                _new_record(
                    Record,
                    (
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        # surrogateescape: a key that is not UTF-8 keeps its bytes (a runner
                        # dead-letters it, see streams.runners._routing.key_error) instead of
                        # failing the whole batch here.
                        key.decode("utf-8", "surrogateescape") if key is not None else None,
                        m.value() or b"",
                        m.timestamp()[1],
                        dict(headers) if headers else _NO_HEADERS,
                    ),
                )
            )
        return out

    def commit(self, offsets: Offsets | None = None) -> None:
        try:
            if offsets is None:
                positions = [p for p in self._consumer.position(self._consumer.assignment()) if p.offset >= 0]
                if positions:
                    self._consumer.commit(offsets=positions, asynchronous=False)
            elif offsets:
                self._consumer.commit(
                    offsets=[_RawTP(tp.topic, tp.partition, o) for tp, o in offsets.items()], asynchronous=False
                )
        except KafkaException as exc:
            raise _raise(exc, "commit") from None

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        parts = self._consumer.committed([_RawTP(tp.topic, tp.partition) for tp in partitions], timeout=10)
        return {TopicPartition(p.topic, p.partition): (p.offset if p.offset != OFFSET_INVALID else None) for p in parts}

    def position(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        parts = self._consumer.position([_RawTP(tp.topic, tp.partition) for tp in partitions])
        return {TopicPartition(p.topic, p.partition): p.offset for p in parts if p.offset >= 0}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(_RawTP(tp.topic, tp.partition, offset))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()]

    def watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(_RawTP(tp.topic, tp.partition), timeout=10, cached=cached)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()
