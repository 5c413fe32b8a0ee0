"""Which waiting job the trainer worker takes next, which ones a newer request supersedes,
and how far it may commit (trainers/worker/_queue.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import OffsetRange, TrainJobRequest
from streams import Record, TopicPartition
from trainers.worker._queue import JobQueue

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _job(job_id: str, s: int, kind: str = "sft", priority: int = 0, model: str = "policy") -> TrainJobRequest:
    return TrainJobRequest(
        job_id=job_id,
        kind=kind,  # type: ignore[arg-type]
        model=model,
        inputs=(OffsetRange(topic="samples.sft", partition=0, from_offset=0, to_offset=1),),
        created_ts=T0 + timedelta(seconds=s),
        priority=priority,
    )


def _record(offset: int, partition: int = 0) -> Record:
    return Record("trainer.jobs", partition, offset, None, b"", 0)


def _queue(*jobs: TrainJobRequest | None, partition: int = 0) -> JobQueue:
    q = JobQueue(lambda j: f"{j.kind}:{j.model}" if j.kind == "reward" else f"policy:{j.model}")
    for offset, job in enumerate(jobs):
        q.read(_record(offset, partition), job)
    return q


def test_the_newest_policy_job_supersedes_older_ones_of_any_recipe() -> None:
    q = _queue(_job("g1", 1), _job("g2", 2, "dpo"), _job("g3", 3, "grpo"))
    assert [w.job.job_id for w in q.supersede()] == ["g1", "g2"]
    taken = q.next()
    assert taken is not None and taken.job.job_id == "g3"


def test_reward_jobs_are_taken_first_and_only_supersede_their_own_model() -> None:
    q = _queue(
        _job("p1", 1),
        _job("rm1", 2, "reward"),
        _job("rm-other", 3, "reward", model="other"),
        _job("rm2", 4, "reward"),
    )
    assert [w.job.job_id for w in q.supersede()] == ["rm1"]
    order = []
    while (w := q.next()) is not None:
        order.append(w.job.job_id)
        q.done(w)
    assert order == ["rm-other", "rm2", "p1"]


def test_a_prioritised_job_is_not_superseded_by_newer_ordinary_ones_and_goes_first() -> None:
    q = _queue(_job("old", 1), _job("planted", 2, "dpo", priority=1), _job("newer", 3))
    assert [w.job.job_id for w in q.supersede()] == ["old"]
    first = q.next()
    assert first is not None and first.job.job_id == "planted"
    q.done(first)
    second = q.next()
    assert second is not None and second.job.job_id == "newer"


def test_commits_stop_at_the_oldest_job_still_waiting() -> None:
    tp = TopicPartition("trainer.jobs", 0)
    q = _queue(_job("rm", 1, "reward"), None, _job("p", 2), None)  # two unreadable records
    assert q.committable() == {tp: 0}
    first = q.next()
    assert first is not None and first.job.job_id == "rm"
    q.done(first)
    assert q.committable() == {tp: 2}  # the policy job at offset 2 still waits
    second = q.next()
    assert second is not None
    q.done(second)
    assert q.committable() == {tp: 4} and q.next() is None


def test_a_record_read_twice_waits_once() -> None:
    q = _queue(_job("p", 1))
    q.read(_record(0), _job("p", 1))
    assert len(q) == 1 and not q.supersede()


def test_replay_reaches_back_a_bounded_share_never_below_the_log() -> None:
    from schemas import Topics
    from streams import EmbeddedBus
    from trainers.worker._inputs import with_replay

    topics = Topics("unit-replay")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    producer = bus.producer()
    for i in range(30):
        producer.produce(topics.samples_sft, b"{}", key=f"k{i}", partition=0)
        producer.produce(topics.samples_reward, b"{}", key=f"k{i}", partition=1)
    producer.flush()
    job = (
        OffsetRange(topic=topics.samples_sft, partition=0, from_offset=20, to_offset=30),
        OffsetRange(topic=topics.samples_reward, partition=1, from_offset=4, to_offset=30),
    )
    replayed = with_replay(bus, job, share=0.5, max_records=100)
    # Half of each range's own size before it, but never before offset 0.
    assert [(r.from_offset, r.to_offset) for r in replayed] == [(15, 30), (0, 30)]
    capped = with_replay(bus, job, share=1.0, max_records=7)
    assert sum(r.count for r in capped) - sum(r.count for r in job) <= 7
    assert with_replay(bus, job, share=0.0, max_records=100) == job
    assert with_replay(bus, job, share=0.5, max_records=100) == replayed  # deterministic: a redo reads the same
