"""The transactional runner: consume, transform, produce, exactly once.

Per commit interval, one transaction holds the outputs, the state changelog entries
changed since the last commit, and the consumer offsets (``send_offsets_to_transaction``).
On partition assignment the processor's state is restored from the changelog, so a
restarted (or SIGKILLed) process resumes exactly where the last committed transaction
left it. The same code runs on the Kafka bus (production) and the embedded bus.

The periodic commit is pipelined: its broker round trips (sending the offsets, committing)
run on a background thread while the next records are processed; outputs of those
records wait in memory and are produced into the next transaction once the commit is
done. One commit is in flight at a time; the next starts once it is done (never waits
for it). A failed commit rewinds everything since the last committed one, so the outputs
waiting in memory are dropped with the state they came from.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from schemas import MessageTooLargeError, StreamError, Topics
from streams.bus import Bus, Consumer, Producer, Record, TopicPartition
from streams.dlq import error_reason_label, send_to_dlq
from streams.dlq_config import DeadLetterConfig
from streams.processors import Output, Processor, SourcePartition
from streams.runners._changelog import changelog_topic, ensure_changelog, read_changelog, write_changes
from streams.runners._metrics import consumer_lag, runner_metrics, serve_metrics
from streams.runners._routing import PartitionCheck, key_error
from streams.runners._waiting import WaitingOutputs
from streams.runners.runner_config import RunnerConfig

log = logging.getLogger(__name__)


class TransactionalRunner:
    """Drives one processor in a consumer group with transactions.

    Args:
        bus: where to read and write (``KafkaBus`` in production; ``EmbeddedBus`` works too).
        processor: the transport-free processor.
        topics: topic namespace; inputs, outputs and the DLQ are resolved through it.
        group_id: consumer group; processes with the same group share the partitions.
        dlq: how dead letters are bounded (bad input and misrouted records go to the DLQ).

    Use ``start()``, then ``poll_once()`` in a loop (or ``run()``), then ``stop()``.
    """

    runner_name = "kafka"

    def __init__(
        self,
        bus: Bus,
        processor: Processor,
        topics: Topics,
        group_id: str,
        config: RunnerConfig | None = None,
        dlq: DeadLetterConfig | None = None,
    ) -> None:
        self.bus = bus
        self.processor = processor
        self.topics = topics
        self.group_id = group_id
        self.config = config or RunnerConfig()
        self.dlq = dlq or DeadLetterConfig()
        self.routing = PartitionCheck(
            processor.name, self.config.partitioner, lambda base: bus.partitions(topics.name(base))
        )
        self.changelog = changelog_topic(topics, group_id)
        self._inputs = {topics.name(t): t for t in processor.inputs}
        self._out_names: dict[str, str] = {}
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._committing: threading.Thread | None = None
        self._commit_error: StreamError | None = None
        self._waiting = WaitingOutputs()
        self._rewinds = 0
        self._positions: dict[TopicPartition, int] = {}
        self._pending = 0
        self._last_commit = time.monotonic()
        self._last_lag = 0.0
        self._last_wall = 0.0
        self._metrics = runner_metrics()
        self._stopping = False
        self.events_in = 0
        self.events_out = 0
        self.dead_letters = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        serve_metrics(self.config.metrics_port)
        ensure_changelog(self.bus, self.changelog, list(self._inputs))
        # A stable transactional id per (group, instance): a restarted instance fences the
        # crashed one and aborts its open transaction at once instead of after a timeout.
        self._producer = self.bus.producer(
            transactional_id=f"{self.group_id}-{self.config.instance_id}",
            **{"transaction.timeout.ms": self.config.transaction_timeout_ms},
        )
        # Static membership: a restarted instance takes its partitions back at once instead
        # of waiting for its crashed predecessor's session to expire.
        membership: dict[str, str | int] = {
            "group.instance.id": f"{self.group_id}-{self.config.instance_id}",
            "session.timeout.ms": int(self.config.session_timeout_s * 1000),
        }
        self._consumer = self.bus.consumer(self.group_id, **membership)
        self._producer.begin_transaction()
        self._consumer.subscribe(list(self._inputs), on_assign=self._on_assign, on_revoke=self._on_revoke)

    def stop(self) -> None:
        """Commit what was processed and leave the group."""
        if self._consumer is None:
            return
        self._stopping = True
        try:
            self.commit()
        finally:
            try:
                self._consumer.close()
            finally:
                if self._producer is not None:
                    with contextlib.suppress(StreamError):
                        self._producer.abort_transaction()
                    self._producer.close()
                self._consumer = None
                self._producer = None

    def __enter__(self) -> TransactionalRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Poll until ``should_stop()`` is true (forever without it)."""
        while not (should_stop and should_stop()):
            self.poll_once()

    # -- rebalance -----------------------------------------------------------------------
    def _on_assign(self, tps: list[TopicPartition]) -> None:
        self.routing.forget()  # a topic may have grown
        for tp in tps:
            self._restore(tp)

    def _restore(self, tp: TopicPartition) -> None:
        base = self._inputs[tp.topic]
        entries = read_changelog(self.bus, self.changelog, tp.partition).get(base, {})
        self.processor.restore(SourcePartition(base, tp.partition), entries)
        log.info("%s: restored %s[%d] (%d entries)", self.processor.name, tp.topic, tp.partition, len(entries))

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        if not self._stopping:
            self.commit()
        for tp in tps:
            self.processor.drop(SourcePartition(self._inputs[tp.topic], tp.partition))
            self._positions.pop(tp, None)

    # -- processing ----------------------------------------------------------------------
    def poll_once(self, max_records: int | None = None, timeout_s: float | None = None) -> int:
        """Consume and process one batch; commit if the interval has passed. Returns records consumed."""
        assert self._consumer is not None and self._producer is not None, "call start() first"
        if self._committing is not None and not self._committing.is_alive():
            self._finish_commit()
        rewinds = self._rewinds
        try:
            records = self._consumer.consume(
                max_records or self.config.max_batch, self.config.poll_timeout_s if timeout_s is None else timeout_s
            )
        except StreamError as exc:
            if not exc.retriable:
                raise
            # Leader moves and broker hiccups pass; librdkafka retries underneath.
            log.warning("%s: consume failed, retrying: %s", self.processor.name, exc)
            self._metrics.commit_failures.labels(self.processor.name, "consume").inc()
            records = []
        if self._rewinds != rewinds:
            records = []  # fetched before a rewind (in a rebalance callback): read again from the committed offsets
        if records:
            started = time.perf_counter()
            self._process(records)
            self._metrics.latency.labels(self.processor.name).observe((time.perf_counter() - started) / len(records))
        now = time.monotonic()
        if now - self._last_wall >= self.config.wall_clock_interval_s:
            self._last_wall = now
            self._emit(self.processor.advance(int(time.time() * 1000)))
        if self._pending and now - self._last_commit >= self.config.commit_interval_s and not self._commit_in_flight():
            self._start_commit()
        if now - self._last_lag >= self.config.lag_interval_s:
            self._last_lag = now
            self._measure_lag()
        return len(records)

    def _process(self, records: Iterable[Record]) -> None:
        process = self.processor.process
        misrouted = self.routing.check
        inputs = self._inputs
        positions = self._positions
        outputs: list[Output] = []
        n = 0
        topic: str | None = None
        partition = -1
        source = SourcePartition("", -1)  # replaced at the first record (its topic is never None)
        next_offset = 0
        for rec in records:
            n += 1
            # Records come in runs of one partition: position and source change per run.
            if rec.partition != partition or rec.topic != topic:
                if topic is not None:
                    positions[TopicPartition(topic, partition)] = next_offset
                topic, partition = rec.topic, rec.partition
                source = SourcePartition(inputs[topic], partition)
            next_offset = rec.offset + 1
            bad_key = key_error(rec.key)
            if bad_key is not None:
                self._dead_letter(rec, bad_key)
                continue
            misplaced = misrouted(source, rec.key)
            if misplaced is not None:  # not applied: its key's state lives in another partition
                self._dead_letter(rec, misplaced)
                continue
            try:
                outputs += process(source, rec.offset, rec.key, rec.value)
            except Exception as exc:  # bad input must never stop the processor
                self._dead_letter(rec, exc)
        if topic is not None:
            positions[TopicPartition(topic, partition)] = next_offset
        self._emit(outputs)
        self.events_in += n
        self._pending += n
        self._metrics.events_in.labels(self.processor.name, self.runner_name).inc(n)

    def _dead_letter(self, rec: Record, exc: Exception) -> None:
        topic, partition, offset = rec.topic, rec.partition, rec.offset
        send_to_dlq(
            self._sink(),
            rec.value,
            rec.key,
            exc,
            f"{topic}/{partition}/{offset}",
            topic=self.topics.chat_events_dlq,
            max_bytes=self.dlq.max_bytes,
        )
        self.dead_letters += 1
        self._metrics.dlq.labels(self.processor.name, error_reason_label(exc)).inc()

    def _sink(self) -> Producer | WaitingOutputs:
        """Where outputs go now: the open transaction, or memory while a commit is in flight."""
        assert self._producer is not None
        return self._waiting if self._committing is not None else self._producer

    def _emit(self, outputs: list[Output]) -> None:
        if not outputs:
            return
        if self._committing is not None:
            self._waiting.hold(outputs)
        else:
            self._produce(outputs)
        counts: dict[str, int] = {}
        for out in outputs:
            counts[out.topic] = counts.get(out.topic, 0) + 1
        for topic, n in counts.items():
            self._metrics.events_out.labels(self.processor.name, topic).inc(n)
        self.events_out += len(outputs)
        self._pending += 1

    def _produce(self, outputs: list[Output]) -> None:
        assert self._producer is not None
        produce = self._producer.produce
        names = self._out_names
        for out in outputs:
            name = names.get(out.topic)
            if name is None:
                name = names[out.topic] = self.topics.name(out.topic)
            try:
                produce(name, out.value, key=out.key)
            except MessageTooLargeError as exc:
                # An output over the producer's message.max.bytes: dead-lettered (bounded,
                # its size and sha256 in headers), so the run goes on and nothing is lost.
                send_to_dlq(
                    self._producer,
                    out.value,
                    out.key,
                    exc,
                    f"output:{name}",
                    topic=self.topics.chat_events_dlq,
                    max_bytes=self.dlq.max_bytes,
                )
                self.dead_letters += 1
                self._metrics.dlq.labels(self.processor.name, error_reason_label(exc)).inc()

    def advance_to(self, ts_ms: int) -> int:
        """Force event time forward on every owned partition (closes windows); commits. Returns outputs."""
        outputs = self.processor.advance_to(ts_ms)
        self._emit(outputs)
        self._pending += 1
        self.commit()
        return len(outputs)

    # -- commit ----------------------------------------------------------------------------
    def commit(self) -> None:
        """Commit outputs, changelog and offsets in one transaction and wait for it; start the next one."""
        self._start_commit()
        self._finish_commit()

    def _start_commit(self) -> None:
        """Write the changelog, then send the offsets and commit on a background thread."""
        if self._producer is None or self._consumer is None:
            return
        self._finish_commit()  # one transaction in flight at a time
        producer = self._producer
        try:
            for source in self.processor.owned():
                changes = self.processor.take_changes(source)
                if changes:
                    write_changes(producer, self.bus, self.changelog, source.partition, source.topic + "|", changes)
        except StreamError as exc:
            self._commit_error = exc
            self._finish_commit()
            return
        finally:
            self._pending = 0
            self._last_commit = time.monotonic()
        self._commit_error = None
        self._committing = threading.Thread(
            target=self._send_and_commit,
            args=(dict(self._positions),),
            name=f"{self.processor.name}-commit",
            daemon=True,
        )
        self._committing.start()

    def _commit_in_flight(self) -> bool:
        # The next commit starts once the last one is done rather than waiting for it: the
        # wait was ~5 % of the runner's time when the broker was slow to end a transaction.
        return self._committing is not None and self._committing.is_alive()

    def _send_and_commit(self, positions: Mapping[TopicPartition, int]) -> None:
        assert self._producer is not None and self._consumer is not None
        try:
            if positions:
                self._producer.send_offsets_to_transaction(positions, self._consumer)
            self._producer.commit_transaction()
        except StreamError as exc:
            self._commit_error = exc

    def _finish_commit(self) -> None:
        """Wait for the commit in flight (if any); rewind on failure; open the next transaction."""
        if self._committing is not None:
            self._committing.join()
            self._committing = None
        elif self._commit_error is None:
            return
        assert self._producer is not None
        error, self._commit_error = self._commit_error, None
        if error is not None:
            self._metrics.commit_failures.labels(self.processor.name, "commit_transaction").inc()
            log.warning("%s: transaction failed, rewinding to the last commit: %s", self.processor.name, error)
            self._waiting.clear()
            self._rewind()
        else:
            self._metrics.commits.labels(self.processor.name).inc()
        self._producer.begin_transaction()
        self._produce(self._waiting.take_outputs())
        self._waiting.replay(self._producer)

    def _rewind(self) -> None:
        """Abort, then reload state and positions from the last committed transaction."""
        assert self._producer is not None and self._consumer is not None
        self._rewinds += 1
        try:
            self._producer.abort_transaction()
        except StreamError:
            self._metrics.commit_failures.labels(self.processor.name, "abort_transaction").inc()
            raise  # fatal (e.g. fenced): the process must restart and restore
        assigned = self._consumer.assignment()
        committed = self._consumer.committed(assigned)
        for tp in assigned:
            self.processor.drop(SourcePartition(self._inputs[tp.topic], tp.partition))
            self._restore(tp)
            self._consumer.seek(tp, committed.get(tp) or 0)
        self._positions.clear()

    def _measure_lag(self) -> None:
        if self._consumer is None:
            return
        try:
            self._metrics.lag.labels(self.processor.name).set(consumer_lag(self._consumer))
        except StreamError as exc:
            log.debug("lag measurement failed: %s", exc)
