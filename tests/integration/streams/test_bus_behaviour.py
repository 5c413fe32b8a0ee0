"""One behavioural suite, run on the embedded bus and on the real Kafka broker."""

from __future__ import annotations

import pytest

from schemas import MessageTooLargeError, StreamError, Topics
from streams import Bus, TopicPartition, partition_for_key


def _drain(consumer, expected: int, max_polls: int = 60) -> list:
    out: list = []
    for _ in range(max_polls):
        out.extend(consumer.consume(1000, 0.5))
        if len(out) >= expected:
            break
    return out


def test_keys_land_on_murmur2_partition_in_order(bus: Bus, topics: Topics, unique) -> None:
    topic = topics.chat_events
    n = bus.partitions(topic)
    producer = bus.producer()
    sent = [(f"user-{i % 37}", f"{i}".encode()) for i in range(500)]
    for key, value in sent:
        producer.produce(topic, value, key=key, headers={"h": b"1"})
    producer.flush()
    consumer = bus.consumer(unique("g"))
    consumer.subscribe([topic])
    records = _drain(consumer, len(sent))
    consumer.close()
    assert len(records) == len(sent)
    assert all(r.partition == partition_for_key(r.key.encode(), n) for r in records)
    assert all(r.headers.get("h") == b"1" for r in records)
    per_key: dict[str, list[int]] = {}
    for r in records:
        per_key.setdefault(r.key, []).append(int(r.value))
    for key, values in per_key.items():
        assert values == sorted(values), f"order broken for {key}"


def test_committed_offsets_resume_a_group(bus: Bus, topics: Topics, unique) -> None:
    topic = topics.samples_sft
    producer = bus.producer()
    for i in range(40):
        producer.produce(topic, str(i).encode(), key=f"k{i}")
    producer.flush()
    group = unique("g")
    first = bus.consumer(group)
    first.subscribe([topic])
    got = _drain(first, 40)
    assert len(got) == 40
    half = {}
    for r in got:
        if int(r.value) < 20:
            half[r.tp] = max(half.get(r.tp, 0), r.offset + 1)
    first.commit(half)
    first.close()
    second = bus.consumer(group)
    second.subscribe([topic])
    rest = _drain(second, 40 - sum(half.values()), max_polls=10)
    second.close()
    resumed = {(r.partition, r.offset) for r in rest}
    assert all(r.offset >= half.get(r.tp, 0) for r in rest)
    assert len(resumed) == 40 - sum(half.values())


def test_assign_reads_an_exact_range(bus: Bus, topics: Topics) -> None:
    topic = topics.trainer_jobs
    producer = bus.producer()
    for i in range(10):
        producer.produce(topic, str(i).encode(), key="same")
    producer.flush()
    consumer = bus.consumer()
    tp = TopicPartition(topic, 0)
    consumer.assign({tp: 3})
    assert consumer.watermarks(tp)[1] == 10
    got = _drain(consumer, 7)
    consumer.close()
    assert [int(r.value) for r in got] == list(range(3, 10))


def test_transactions_commit_atomically_and_abort_invisibly(bus: Bus, topics: Topics, unique) -> None:
    source, sink = topics.chat_events, topics.engagement_signals
    plain = bus.producer()
    for i in range(5):
        plain.produce(source, str(i).encode(), key="u")
    plain.flush()
    group = unique("g")
    consumer = bus.consumer(group)
    consumer.subscribe([source])
    records = _drain(consumer, 5)
    txn = bus.producer(transactional_id=unique("tx"))
    txn.begin_transaction()
    txn.produce(sink, b"aborted", key="u")
    txn.abort_transaction()
    txn.begin_transaction()
    txn.produce(sink, b"committed", key="u")
    offsets = {records[-1].tp: records[-1].offset + 1}
    txn.send_offsets_to_transaction(offsets, consumer)
    txn.commit_transaction()
    consumer.close()
    reader = bus.consumer(unique("r"))
    reader.subscribe([sink])
    values = [r.value for r in _drain(reader, 1, max_polls=6)]
    reader.close()
    assert values == [b"committed"]
    check = bus.consumer(group)
    assert check.committed([records[-1].tp]) == offsets
    check.close()


def test_newer_transactional_producer_fences_the_older(bus: Bus, topics: Topics, unique) -> None:
    tid = unique("tx")
    old = bus.producer(transactional_id=tid)
    old.begin_transaction()
    old.produce(topics.engagement_signals, b"zombie", key="u")
    bus.producer(transactional_id=tid)  # a restarted instance takes over
    with pytest.raises(StreamError):
        old.commit_transaction()


def test_group_members_share_partitions(bus: Bus, topics: Topics, unique) -> None:
    topic = topics.chat_events
    group = unique("g")
    a, b = bus.consumer(group), bus.consumer(group)
    a.subscribe([topic])
    b.subscribe([topic])
    for _ in range(30):  # Kafka assigns during poll
        a.consume(10, 0.2)
        b.consume(10, 0.2)
        if a.assignment() and b.assignment():
            break
    assigned_a, assigned_b = set(a.assignment()), set(b.assignment())
    a.close()
    b.close()
    assert assigned_a and assigned_b and not assigned_a & assigned_b
    assert len(assigned_a | assigned_b) == bus.partitions(topic)


def test_unknown_topic_is_a_stream_error(bus: Bus) -> None:
    with pytest.raises(StreamError):
        bus.partitions("no.such.topic")


def test_a_message_over_message_max_bytes_is_refused_with_its_size(bus: Bus, topics: Topics) -> None:
    producer = bus.producer(**{"message.max.bytes": 100_000})
    with pytest.raises(MessageTooLargeError) as refused:
        producer.produce(topics.chat_events, b"x" * 200_000, key="user-1", headers={"h": b"12"})
    assert (refused.value.size_bytes, refused.value.max_bytes) == (200_009, 100_000)
    producer.produce(topics.chat_events, b"x" * 90_000, key="user-1")  # under the limit: accepted
    producer.flush()
