"""Buffer / trigger: exact offset ranges, deterministic job ids, never two jobs for a range."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

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
        "samples.sft": ("policy",),
        "samples.preference": ("policy", "reward"),
    }
    assert proc.config.job_kinds("samples.sft") == ("sft",)  # the default recipe
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
    proc = BufferProcessor(BufferConfig(min_samples=2, recipe="dpo"))
    src = SourcePartition("samples.preference", 0)
    out = []
    for off in range(2):
        out += proc.process(src, off, "c", _pair(off))
    jobs = [parse_message(TrainJobRequest, o.value) for o in out]
    assert sorted(j.kind for j in jobs) == ["dpo", "reward"]
    assert jobs[0].inputs == jobs[1].inputs and jobs[0].job_id != jobs[1].job_id


@pytest.mark.parametrize("recipe", ["sft", "dpo", "grpo"])
def test_the_configured_recipe_is_the_policy_job_kind(recipe: str) -> None:
    config = BufferConfig.model_validate({"min_samples": 3, "recipe": recipe})
    assert config.job_kinds("samples.sft") == (recipe,)
    assert config.job_kinds("samples.preference") == (recipe, "reward")
    assert config.job_kinds("samples.reward") == ("reward",)
    proc = BufferProcessor(config)
    out = []
    for off in range(3):
        out += proc.process(SourcePartition("samples.sft", 0), off, "c", _sample(off))
    (job,) = [parse_message(TrainJobRequest, o.value) for o in out]
    assert job.kind == recipe and job.job_id == job_id_for(recipe, [("samples.sft", 0, 0, 3)])


def test_a_policy_trigger_claims_the_waiting_pairs_too() -> None:
    """The policy job of a trigger on samples.sft also names the preference pairs waiting
    (online DPO reads them); the Bradley–Terry job gets the pairs alone; nothing is claimed twice."""
    proc = BufferProcessor(BufferConfig(min_samples=3, recipe="dpo"))
    sft, pref = SourcePartition("samples.sft", 0), SourcePartition("samples.preference", 1)
    assert proc.process(pref, 0, "c", _pair(0)) == []
    assert proc.process(pref, 1, "c", _pair(1)) == []
    out = []
    for off in range(3):
        out += proc.process(sft, off, "c", _sample(off))
    jobs = {j.kind: j for j in (parse_message(TrainJobRequest, o.value) for o in out)}
    assert sorted(jobs) == ["dpo", "reward"]
    assert [(r.topic, r.partition, r.from_offset, r.to_offset) for r in jobs["dpo"].inputs] == [
        ("samples.preference", 1, 0, 2),
        ("samples.sft", 0, 0, 3),
    ]
    assert [(r.topic, r.from_offset, r.to_offset) for r in jobs["reward"].inputs] == [("samples.preference", 0, 2)]
    assert proc.pending("samples.preference") == 0 and proc.advance_to(0) == []
    # Without pairs waiting, the policy job names the SFT samples alone and no reward job comes.
    out = []
    for off in range(3, 6):
        out += proc.process(sft, off, "c", _sample(off))
    (only,) = [parse_message(TrainJobRequest, o.value) for o in out]
    assert only.kind == "dpo" and [(r.from_offset, r.to_offset) for r in only.inputs] == [(3, 6)]


def test_explicit_kinds_keep_their_own_ranges() -> None:
    proc = BufferProcessor(BufferConfig(min_samples=2, kinds={"samples.sft": "sft", "samples.preference": "dpo"}))
    assert proc.process(SourcePartition("samples.preference", 0), 0, "c", _pair(0)) == []
    out = []
    for off in range(2):
        out += proc.process(SourcePartition("samples.sft", 0), off, "c", _sample(off))
    (job,) = [parse_message(TrainJobRequest, o.value) for o in out]
    assert job.kind == "sft" and {r.topic for r in job.inputs} == {"samples.sft"}
    assert proc.pending("samples.preference") == 1
