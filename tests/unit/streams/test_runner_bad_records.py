"""Records a runner cannot take as they are go to the DLQ with a reason, and the run goes
on: an output over the bus's message limit (bounded, its size and sha256 in headers), and
a key that is not UTF-8 (its bytes kept in a header). On the embedded bus, which refuses
messages over librdkafka's default ``message.max.bytes`` as Kafka does; the Kafka
consumer's half (keys decoded without failing) is in
tests/integration/streams/test_bad_keys.py."""

from __future__ import annotations

import hashlib
import json

from schemas import ENGAGEMENT_SIGNALS, Topics
from streams import DeadLetter, DeadLetterConfig, EmbeddedBus, Record, TopicPartition, partition_for_key
from streams.dlq import ORIGINAL_KEY, dead_letter
from streams.processors import Output, SignalsProcessor, SourcePartition
from streams.processors.signals import State
from streams.runners import EmbeddedRunner
from streams.runners._routing import key_error
from tests.conftest import event_dict

MAX_BYTES = 100_000
HUGE = 2_000_000  # over the embedded bus's 1,000,000-byte limit


class _HugeOutputs(SignalsProcessor):
    """The signals processor, plus a 2 MB output for every user message saying "huge"."""

    def _apply(self, source: SourcePartition, state: State, key: str | None, value: bytes) -> list[Output]:
        out = super()._apply(source, state, key, value)
        if json.loads(value).get("text") == "huge":
            out.append(Output(ENGAGEMENT_SIGNALS, key, b"x" * HUGE))
        return out


def _read(bus: EmbeddedBus, topic: str) -> list[Record]:
    consumer = bus.consumer(None)
    consumer.assign({TopicPartition(topic, p): 0 for p in range(bus.partitions(topic))})
    out: list[Record] = []
    while batch := consumer.consume(10_000, 0):
        out.extend(batch)
    return out


def test_an_output_over_the_message_limit_is_dead_lettered_bounded_and_the_run_goes_on() -> None:
    topics = Topics("t")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    producer = bus.producer()
    events = (
        event_dict(turn=1, text="hi"),
        event_dict("model_response", turn=1),
        event_dict(turn=2, text="huge"),  # decides the reply: its outcome goes out beside the huge output
    )
    for event in events:
        producer.produce(topics.chat_events, json.dumps(event).encode(), key="user-1")
    runner = EmbeddedRunner(bus, _HugeOutputs(), topics, dlq=DeadLetterConfig(max_bytes=MAX_BYTES))
    runner.start()
    runner.run_until_idle()
    runner.stop()
    assert runner.events_in == 3 and runner.dead_letters == 1
    (record,) = _read(bus, topics.chat_events_dlq)
    letter = DeadLetter.from_record(record)
    assert len(record.value) + sum(len(k) + len(v) for k, v in record.headers.items()) <= MAX_BYTES
    assert letter.original_size_bytes == HUGE
    assert letter.original_sha256 == hashlib.sha256(b"x" * HUGE).hexdigest()
    assert letter.truncated == ("value",) and letter.error_type == "MessageTooLargeError"
    assert letter.source == f"output:{topics.engagement_signals}" and letter.key == "user-1"
    (outcome,) = [r for r in _read(bus, topics.engagement_signals) if b'"response_outcome"' in r.value]
    assert json.loads(outcome.value)["continued"] is True  # the run's other outputs went out


def test_a_key_that_is_not_utf8_is_refused_and_its_letter_keeps_the_bytes() -> None:
    raw = b"user-\xff\xfe"
    key = raw.decode("utf-8", "surrogateescape")  # what the Kafka consumer hands over
    error = key_error(key)
    assert error is not None and error.field == "key" and "not valid UTF-8" in error.reason
    assert key_error("user-1") is None and key_error("usér-ü") is None and key_error(None) is None
    letter = dead_letter(b"{}", key, error, "t.chat.events/0/7", max_bytes=MAX_BYTES)
    assert letter.key is None and letter.headers[ORIGINAL_KEY] == raw
    assert letter.headers["dlq.field"] == b"key"


def test_the_runner_dead_letters_a_record_whose_key_is_not_utf8() -> None:
    topics = Topics("t")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    runner = EmbeddedRunner(bus, SignalsProcessor(), topics)
    bad = b"user-\xff".decode("utf-8", "surrogateescape")
    home = partition_for_key(b"user-1", bus.partitions(topics.chat_events))
    records = [
        Record(topics.chat_events, home, 0, "user-1", json.dumps(event_dict()).encode(), 0),
        Record(topics.chat_events, home, 1, bad, json.dumps(event_dict(turn=2)).encode(), 0),
    ]
    runner.start()
    runner._process(records)  # the records as a consumer hands them over
    runner.stop()
    assert runner.dead_letters == 1
    (record,) = _read(bus, topics.chat_events_dlq)
    letter = DeadLetter.from_record(record)
    assert letter.key is None and letter.original_key == b"user-\xff" and letter.field == "key"
    assert letter.source == f"{topics.chat_events}/{home}/1"
    assert runner.processor.last_offset(SourcePartition("chat.events", home)) == 0  # the good one was applied
