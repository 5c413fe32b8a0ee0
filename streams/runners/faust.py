"""The Faust runner (faust-streaming), for teams that already run Faust.

Deliberately conservative (see the Faust pitfalls in the docs): at-least-once, one agent
with ``concurrency=1``, no windowed tables (windows live in the processor's state), no
Faust exactly-once mode. The processor's entries go to a compacted changelog topic keyed
``<input>|<partition>|<entry>``, in the partition of their source partition; the runner
restores a partition from it when the partition is first seen (not through Faust's table
recovery, which was seen to stall for good after a SIGKILL).

The processor's wall-clock timers run every ``wall_clock_interval_s`` (buffer age triggers,
quiet partitions); what they emit is delivered and the state they changed persisted as at
a checkpoint.

Records are acknowledged manually, at checkpoints (every ``faust_checkpoint_every``
records of a partition, and on a timer): the producer is flushed (outputs delivered),
then the entries changed since the last checkpoint are written to the changelog
partition of that source partition, then the records are acked, so Faust's committed
offset never passes persisted state. Each entry is written as ``{"o": offset, "v": value,
"p": previous value}`` with ``__meta__`` (last applied offset) last. A crash can deliver a
prefix of one checkpoint's writes; on restore, entries newer than ``__meta__`` roll back
to their previous value, and records up to ``__meta__``'s offset are skipped: a replay is
never double counted. Outputs of replayed records are sent again, with the same key and
bytes (at-least-once; consumers deduplicate by key and content).

Nothing Faust is imported until ``start()``: importing faust has side effects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from schemas import CHAT_EVENTS_DLQ, Topics, TopicSpec
from streams.bus import KafkaBus, KafkaSettings
from streams.dlq import dead_letter, error_reason_label
from streams.dlq_config import DeadLetterConfig
from streams.processors import META, Output, Processor, SourcePartition
from streams.runners._changelog import read_changelog
from streams.runners._metrics import runner_metrics, serve_metrics
from streams.runners._routing import PartitionCheck, key_error
from streams.runners.runner_config import RunnerConfig

log = logging.getLogger(__name__)


def faust_table_topic(group_id: str, processor_name: str) -> str:
    """The Faust runner's state changelog topic (compacted)."""
    return f"{group_id}-{processor_name}-state-changelog"


def wrap(offset: int, value: bytes | None, previous: str | None) -> bytes:
    v = None if value is None else value.decode()
    return json.dumps({"o": offset, "v": v, "p": previous}, separators=(",", ":")).encode()


def unwrap_partition(raw: Mapping[str, bytes]) -> dict[str, bytes]:
    """Entries of one source partition as persisted by this runner, rolled back to the last
    complete record (see the module docstring). ``raw`` maps entry key -> wrapped value."""
    docs = {k: json.loads(v) for k, v in raw.items() if v}
    meta = docs.get(META)
    if meta is None:
        return {}
    last = meta["o"]
    out: dict[str, bytes] = {}
    for key, doc in docs.items():
        value = doc["v"] if doc["o"] <= last else doc["p"]
        if value is not None:
            out[key] = value.encode()
    return out


class FaustRunner:
    """Run ``processor`` as a Faust worker. ``run()`` blocks (Faust owns the event loop and
    the signal handlers, so call it from the main thread of its own process)."""

    runner_name = "faust"

    def __init__(
        self,
        processor: Processor,
        topics: Topics,
        group_id: str,
        config: RunnerConfig | None = None,
        partitions: int = 8,
        dlq: DeadLetterConfig | None = None,
    ) -> None:
        self.processor = processor
        self.topics = topics
        self.group_id = group_id
        self.config = config or RunnerConfig()
        self.dlq = dlq or DeadLetterConfig()
        self.routing = PartitionCheck(
            processor.name, self.config.partitioner, lambda base: self._bus.partitions(topics.name(base))
        )
        self.partitions = partitions
        self.table_topic = faust_table_topic(group_id, processor.name)
        self._written: dict[SourcePartition, dict[str, str | None]] = {}
        self._metrics = runner_metrics()

    def build(self) -> Any:
        """Create the Faust app, its topics and agent. Returns the app."""
        import faust

        app = faust.App(
            self.group_id,
            broker=self.config.faust_broker,
            store="memory://",
            autodiscover=False,
            value_serializer="raw",
            key_serializer="raw",
            topic_partitions=self.partitions,
            topic_replication_factor=1,
            processing_guarantee="at_least_once",
            web_enabled=False,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=self.config.commit_interval_s * 10,
            datadir=tempfile.mkdtemp(prefix="faust-"),
            broker_session_timeout=self.config.session_timeout_s,
            broker_heartbeat_interval=min(3.0, self.config.session_timeout_s / 5),
        )
        inputs = {self.topics.name(t): t for t in self.processor.inputs}
        source = app.topic(*inputs, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
        # The state changelog is a plain compacted topic that this runner writes and restores
        # itself: Faust's table recovery was seen to stall for good after a SIGKILL.
        self._changelog = app.topic(
            self.table_topic, key_serializer="raw", value_serializer="raw", partitions=self.partitions
        )
        out_topics: dict[str, Any] = {}
        dlq = app.topic(self.topics.name(CHAT_EVENTS_DLQ), value_serializer="raw", key_serializer="raw")
        processor = self.processor
        metrics = self._metrics
        name = processor.name

        lock = asyncio.Lock()
        pending: dict[SourcePartition, list[Any]] = {}
        every = self.config.faust_checkpoint_every

        async def checkpoint(stream: Any, sources: list[SourcePartition]) -> None:
            """Outputs first (flushed), then the state changes, then ack the records they cover."""
            sources = [src for src in sources if pending.get(src)]
            if not sources:
                return
            await app.producer.flush()
            for src in sources:
                events = pending.pop(src)
                await self._persist(src, events[-1].message.offset)
                for ev in events:
                    await stream.ack(ev)

        async def send(outputs: list[Output]) -> None:
            for out in outputs:
                topic = out_topics.get(out.topic)
                if topic is None:
                    topic = out_topics[out.topic] = app.topic(
                        self.topics.name(out.topic), value_serializer="raw", key_serializer="raw"
                    )
                await topic.send(key=out.key.encode(), value=out.value)

        async def handle(stream: Any) -> None:
            manual = stream.noack()
            self._stream = manual
            async for event in manual.events():
                async with lock:
                    msg = event.message
                    src = SourcePartition(inputs[msg.topic], msg.partition)
                    if src not in self._written:
                        self._restore(src)
                    key = msg.key.decode("utf-8", "surrogateescape") if msg.key is not None else None
                    outputs = []
                    error: Exception | None = key_error(key) or self.routing.check(src, key)
                    if error is None:  # a misrouted record is not applied: its key's state lives elsewhere
                        try:
                            outputs = processor.process(src, msg.offset, key, msg.value or b"")
                        except Exception as exc:  # bad input never stops the worker
                            error = exc
                    if error is not None:
                        source = f"{msg.topic}/{msg.partition}/{msg.offset}"
                        letter = dead_letter(msg.value or b"", key, error, source, self.dlq.max_bytes)
                        letter_key = letter.key.encode() if letter.key is not None else None
                        await dlq.send(key=letter_key, value=letter.value, headers=letter.headers)
                        metrics.dlq.labels(name, error_reason_label(error)).inc()
                    await send(outputs)
                    batch = pending.setdefault(src, [])
                    batch.append(event)
                    metrics.events_in.labels(name, self.runner_name).inc()
                    if len(batch) >= every:
                        await checkpoint(manual, [src])

        app.agent(source, name=f"{name}-agent", concurrency=1)(handle)

        @app.timer(interval=max(0.2, self.config.commit_interval_s * 10))
        async def _checkpoint_all() -> None:
            stream = getattr(self, "_stream", None)
            if stream is not None:
                async with lock:
                    await checkpoint(stream, list(pending))

        @app.timer(interval=self.config.wall_clock_interval_s)
        async def _wall_clock() -> None:
            """The processor's wall-clock timers (buffer age triggers, quiet partitions):
            outputs delivered first, then the state they changed, as at a checkpoint."""
            async with lock:
                outputs = processor.advance(int(time.time() * 1000))
                if not outputs:
                    return
                await send(outputs)
                await app.producer.flush()
                for src in processor.owned():
                    if src in self._written and not pending.get(src):
                        await self._persist(src, processor.last_offset(src))
                stream = getattr(self, "_stream", None)
                if stream is not None:
                    await checkpoint(stream, list(pending))

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers as (sender, *args); faust documents (sender, revoked)
        async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:
            self.routing.forget()  # a topic may have grown
            for tp in revoked:
                if tp.topic in inputs:
                    src = SourcePartition(inputs[tp.topic], tp.partition)
                    processor.drop(src)
                    self._written.pop(src, None)
                    pending.pop(src, None)  # not acked: the next owner replays them

        self.app = app
        return app

    def _restore(self, src: SourcePartition) -> None:
        """Read the changelog partition of ``src`` to its end (blocking: it happens once per assignment)."""
        raw = read_changelog(self._bus, self.table_topic, src.partition).get(src.topic, {})
        prefix = f"{src.partition}|"
        entries = unwrap_partition({k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)})
        self.processor.restore(src, entries)
        self._written[src] = {k: v.decode() for k, v in entries.items()}
        log.info(
            "%s: restored %s[%d] from %s (%d entries)",
            self.processor.name,
            src.topic,
            src.partition,
            self.table_topic,
            len(entries),
        )

    async def _persist(self, src: SourcePartition, offset: int) -> None:
        """Write the entries changed since the last checkpoint to the table's changelog
        partition ``src.partition`` (explicitly, so no current event is needed)."""
        changes = self.processor.take_changes(src)
        if not changes:
            return
        written = self._written[src]
        prefix = f"{src.topic}|{src.partition}|"
        meta = changes.pop(META, None)
        items = list(changes.items()) + ([(META, meta)] if meta is not None else [])  # META last: marks completeness
        for key, value in items:
            doc = wrap(offset, value, written.get(key))
            await self._changelog.send(key=(prefix + key).encode(), value=doc, partition=src.partition)
            written[key] = None if value is None else value.decode()

    def run(self) -> None:
        """Start the worker and block until it is stopped (SIGTERM / SIGINT)."""
        import faust

        serve_metrics(self.config.metrics_port)
        bootstrap = self.config.faust_broker.split("://", 1)[-1].replace(";", ",")
        self._bus = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap))
        self._bus.create_topics(
            [
                TopicSpec(
                    self.table_topic,
                    "<input>|<partition>|<state key>",
                    "wrapped JSON entry",
                    self.partitions,
                    "compact",
                )
            ]
        )
        app = self.build()
        worker = faust.Worker(app, loglevel="WARNING", quiet=True)
        worker.execute_from_commandline()
