"""The Quix Streams peer of bench/streams.py: the signals processor driven by a Quix Streams
``Application`` with ``processing_guarantee="exactly-once"``.

Runs in its own venv (requirements/quix.txt: quixstreams 3.28.1 pins confluent-kafka<2.13
and pydantic<2.14, older than the project's), with the clone first on ``sys.path``: the
project's schemas and processors import and run unchanged on those versions. bench/streams.py
starts it as a subprocess and measures it by the offsets the group commits, as it does Faust.

The work per record is the transactional runner's: the co-partitioning check, the
processor (decode, validate, state, outputs), a dead letter for bad input, the processor's
wall-clock tick, and once per commit interval per partition the state entries changed since
the last one. What Quix does instead of the transactional runner: it consumes, produces the
outputs, keeps the state (RocksDB, with its changelog topic) and commits the offsets in its
own transactions, every ``commit_interval`` (set to the transactional runner's, 0.1 s, so
both commit as often). Quix keys state by message key, while the processor's entries are per
source partition (sessions, and windows per arm), so the adapter writes them under one
prefix per partition through the store transaction Quix's own stateful wrapper uses. It
does not restore the processor from that store after a restart (each run starts from a
fresh group): a production adapter would need that, the measured steady state does not.

Usage: python bench/quix_peer.py BOOTSTRAP NAMESPACE GROUP PARTITIONS STATE_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from quixstreams import Application, message_context
from quixstreams.models.serializers import SerializationContext, Serializer

# The clone before bench/ (whose streams.py would shadow the streams package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import CHAT_EVENTS, CHAT_EVENTS_DLQ, ENGAGEMENT_SIGNALS, Topics
from streams.dlq import dead_letter
from streams.processors import SignalsProcessor, SourcePartition
from streams.runners import RunnerConfig
from streams.runners._routing import PartitionCheck

PARTITION_PREFIX = b"partition"
"""The one state prefix of a source partition's processor entries."""


class Outgoing(NamedTuple):
    """One message for Quix to produce: an output or a dead letter."""

    topic: str
    key: str | None
    value: bytes
    headers: list[tuple[str, bytes]] | None


class OutgoingValue(Serializer):
    """Produces an ``Outgoing``'s bytes as they are (the processor serialised them)."""

    def __call__(self, value: Outgoing, ctx: SerializationContext) -> bytes:
        return value.value


def build(bootstrap: str, namespace: str, group: str, partitions: int, state_dir: str) -> Application:
    config = RunnerConfig()
    topics = Topics(namespace)
    processor = SignalsProcessor()
    routing = PartitionCheck(processor.name, config.partitioner, lambda _base: partitions)
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=config.commit_interval_s,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    source = app.topic(topics.chat_events, key_deserializer="str", value_deserializer="bytes")
    sinks = {
        name: app.topic(topics.name(name), key_serializer="str", value_serializer=OutgoingValue())
        for name in (ENGAGEMENT_SIGNALS, CHAT_EVENTS_DLQ)
    }
    sdf = app.dataframe(source)
    flushed: dict[SourcePartition, float] = {}
    ticked = [0.0]

    def persist(src: SourcePartition) -> None:
        """The processor's changed entries into Quix's store (committed with the next checkpoint)."""
        store = sdf.processing_context.checkpoint.get_store_transaction(
            stream_id=sdf.stream_id, partition=src.partition
        ).as_state(prefix=PARTITION_PREFIX)
        for entry, raw in processor.take_changes(src).items():
            if raw is None:
                store.delete(entry)
            else:
                store.set_bytes(entry, raw)

    def step(value: bytes, key: str | None, _ts: int, _headers: Any, _state: Any) -> list[Outgoing]:
        ctx = message_context()
        src = SourcePartition(CHAT_EVENTS, ctx.partition)
        out: list[Outgoing] = []
        error: Exception | None = routing.check(src, key)
        if error is None:
            try:
                out = [Outgoing(o.topic, o.key, o.value, None) for o in processor.process(src, ctx.offset, key, value)]
            except Exception as exc:  # bad input never stops the processor
                error = exc
        if error is not None:
            letter = dead_letter(value, key, error, f"{ctx.topic}/{ctx.partition}/{ctx.offset}")
            out.append(Outgoing(CHAT_EVENTS_DLQ, letter.key, letter.value, list(letter.headers.items())))
        now = time.monotonic()
        if now - ticked[0] >= config.wall_clock_interval_s:
            ticked[0] = now
            out += [Outgoing(o.topic, o.key, o.value, None) for o in processor.advance(int(time.time() * 1000))]
        if now - flushed.get(src, 0.0) >= config.commit_interval_s:
            flushed[src] = now
            persist(src)
        return out

    sdf = sdf.apply(step, stateful=True, expand=True, metadata=True)
    sdf = sdf.set_headers(lambda o, _k, _t, headers: o.headers if o.headers is not None else headers)
    sdf.to_topic(lambda o, _k, _t, _h: sinks[o.topic], key=lambda o: o.key)
    return app


def main() -> None:
    bootstrap, namespace, group, partitions, state_dir = sys.argv[1:6]
    build(bootstrap, namespace, group, int(partitions), state_dir).run()  # until SIGTERM


if __name__ == "__main__":
    main()
