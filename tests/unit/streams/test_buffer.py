"""Buffer / trigger: exact offset ranges, deterministic job ids, never two jobs for a range."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas import TrainJobRequest, parse_message
from streams.processors import BufferConfig, BufferProcessor, SourcePartition, job_id_for


def _sample(i: int) -> bytes:
    return json.dumps(
        {
            "kind": "sft",
            "schema_version": 1,
            "sample_id": f"s{i}",
            "conversation_id": "c",
            "character_id": "ch",
            "context": [{"role": "user", "content": "hi"}],
            "instructions": [],
            "ts": datetime(2026, 1, 5, tzinfo=UTC).isoformat(),
            "response": "hello there",
            "model_version": "v1",
        }
    ).encode()


def _pair(i: int) -> bytes:
    doc = json.loads(_sample(i))
    del doc["response"], doc["model_version"]
    return json.dumps(doc | {"kind": "preference", "chosen": "yes?", "rejected": "no", "source": "regenerate"}).encode()


def test_count_trigger_ranges_and_restart_never_repeats_a_range() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=5, model="chat"))
    p0, p1 = SourcePartition("samples.sft", 0), SourcePartition("samples.sft", 1)
    jobs = []
    for off in range(3):
        jobs += proc.process(p0, off, "c", _sample(off))
    jobs += proc.process(p1, 10, "c", _sample(10))
    assert jobs == []
    jobs += proc.process(p1, 11, "c", _sample(11))
    (job_out,) = jobs
    job = parse_message(TrainJobRequest, job_out.value)
    assert job.kind == "sft" and job.model == "chat" and job_out.topic == "trainer.jobs"
    ranges = [(r.partition, r.from_offset, r.to_offset) for r in job.inputs]
    assert ranges == [(0, 0, 3), (1, 10, 12)]
    assert job.job_id == job_id_for("sft", [("samples.sft", 0, 0, 3), ("samples.sft", 1, 10, 12)])
    # Restart from the persisted state: replays are skipped, the next job starts after the range.
    restored = BufferProcessor(BufferConfig(min_samples=5, model="chat"))
    for src in (p0, p1):
        restored.restore(src, {k: v for k, v in proc.take_changes(src).items() if v is not None})
    assert restored.process(p1, 11, "c", _sample(11)) == []
    out = []
    for off in range(3, 8):
        out += restored.process(p0, off, "c", _sample(off))
    (second,) = out
    assert [(r.partition, r.from_offset, r.to_offset) for r in parse_message(TrainJobRequest, second.value).inputs] == [
        (0, 3, 8)
    ]


def test_age_trigger_and_flush_map_kinds() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=100, max_age_s=60))
    assert proc.config.kinds == {
        "samples.reward": ("reward",),
        "samples.sft": ("sft",),
        "samples.preference": ("dpo", "reward"),
    }
    src = SourcePartition("samples.sft", 0)
    proc.advance(1_000_000)
    assert proc.process(src, 0, "c", _sample(0)) == []
    assert proc.advance(1_000_000 + 59_000) == []
    (job,) = proc.advance(1_000_000 + 60_000)
    assert parse_message(TrainJobRequest, job.value).inputs[0].count == 1
    assert proc.advance(1_000_000 + 200_000) == []  # nothing new: no second job
    reward = SourcePartition("samples.reward", 2)
    proc.restore(reward, {})
    assert proc.advance_to(0) == []


def test_samples_consumed_before_the_first_tick_age_from_it() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=100, max_age_s=60))
    src = SourcePartition("samples.sft", 0)
    assert proc.process(src, 0, "c", _sample(0)) == []  # a runner's first batch comes before its first tick
    assert proc.advance(5_000_000) == []  # the sample starts aging here
    assert proc.advance(5_000_000 + 59_999) == []
    (job,) = proc.advance(5_000_000 + 60_000)
    assert parse_message(TrainJobRequest, job.value).inputs[0].count == 1


def test_topics_without_a_job_kind_are_not_read() -> None:
    buffer = BufferProcessor(BufferConfig(kinds={"samples.sft": "sft"}))
    assert buffer.inputs == ("samples.sft",)
    assert buffer.advance_to(0) == []  # nothing buffered, and no KeyError for the other topics


def test_preference_pairs_request_a_policy_job_and_a_bradley_terry_job_over_the_same_ranges() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=2))
    src = SourcePartition("samples.preference", 0)
    out = []
    for off in range(2):
        out += proc.process(src, off, "c", _pair(off))
    jobs = [parse_message(TrainJobRequest, o.value) for o in out]
    assert sorted(j.kind for j in jobs) == ["dpo", "reward"]
    assert jobs[0].inputs == jobs[1].inputs and jobs[0].job_id != jobs[1].job_id
