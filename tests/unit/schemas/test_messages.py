"""Every non-event message: round trip through JSON and typed refusal of bad values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic_core import PydanticSerializationError

from schemas import (
    ArmWindowAggregate,
    CanaryDecision,
    ChatMessage,
    CheckpointManifest,
    DeploymentState,
    EngagementLabels,
    EvalReport,
    FileDigest,
    Message,
    MetricResult,
    OffsetRange,
    PreferenceSample,
    ResponseOutcome,
    RewardSample,
    SchemaError,
    SessionSummary,
    SftSample,
    Topics,
    TrainJobRequest,
    WindowCounters,
    deployment_record_adapter,
    deployment_record_key,
    engagement_signal_adapter,
    parse_message,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CTX = (ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="hi"))
RANGE = OffsetRange(topic="samples.sft", partition=0, from_offset=0, to_offset=10)

MESSAGES = [
    ResponseOutcome(
        user_id="u",
        conversation_id="c",
        character_id="ch",
        turn=1,
        request_id="r",
        model_version="v1",
        arm="baseline",
        response_ts=NOW,
        continued=True,
        feedback=("thumbs_up",),
        instruction_following=True,
        violation=False,
        latency_ms=12.0,
        finalized_by="next_message",
    ),
    SessionSummary(
        user_id="u",
        conversation_id="c",
        character_id="ch",
        arm="candidate",
        model_version="v2",
        started_ts=NOW,
        ended_ts=NOW,
        user_turns=3,
        responses=3,
        duration_s=40.0,
        end_reason="user_left",
    ),
    ArmWindowAggregate(
        arm="baseline",
        model_version="v1",
        window_start=NOW,
        window_s=3600,
        partition=2,
        sessions=4,
        users_assigned=5,
        users_engaged=4,
        users_active=5,
        user_turns=9,
        user_turns_sq=25,
        responses=9,
        continued=5,
    ),
    RewardSample(
        sample_id="s1",
        conversation_id="c",
        character_id="ch",
        context=CTX,
        ts=NOW,
        response="ok?",
        labels=EngagementLabels(continued=True, instruction_following=True, violation=False),
        model_version="v1",
        arm="baseline",
    ),
    SftSample(
        sample_id="s2", conversation_id="c", character_id="ch", context=CTX, ts=NOW, response="ok?", model_version="v1"
    ),
    PreferenceSample(
        sample_id="s3",
        conversation_id="c",
        character_id="ch",
        context=CTX,
        ts=NOW,
        chosen="a?",
        rejected="b",
        source="regenerate",
    ),
    TrainJobRequest(job_id="j1", kind="sft", model="policy", inputs=(RANGE,), created_ts=NOW),
    CheckpointManifest(
        model="policy",
        version="v2",
        parent="v1",
        kind="lora",
        lora_base="base",
        job_id="j1",
        job_kind="sft",
        files=(FileDigest(path="adapter_model.safetensors", sha256="0" * 64, size=10),),
        lineage=(RANGE,),
        eval=EvalReport(
            baseline_version="v1",
            prompts=100,
            instruction_following=0.8,
            violation_rate=0.05,
            win_rate=0.55,
            passed=True,
        ),
        status="published",
        created_ts=NOW,
    ),
    DeploymentState(
        model="policy",
        baseline_version="v1",
        candidate_version="v2",
        share_bp=500,
        step_index=0,
        status="canary",
        experiment_salt="salt",
        updated_ts=NOW,
    ),
    CanaryDecision(
        decision_id="d1",
        model="policy",
        baseline_version="v1",
        candidate_version="v2",
        action="advance",
        reason="continue rate better",
        share_bp_before=500,
        share_bp_after=2000,
        ts=NOW,
        metrics=(
            MetricResult(
                name="continue_rate",
                role="goal",
                baseline=0.5,
                candidate=0.55,
                lift=0.05,
                ci_low=0.01,
                ci_high=0.09,
                p_value=0.01,
                n_baseline=1000,
                n_candidate=100,
                verdict="better",
            ),
        ),
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: object) -> None:
    model = type(message)
    assert parse_message(model, message.model_dump_json()) == message  # type: ignore[attr-defined]


def test_unions_dispatch_on_kind() -> None:
    for m in MESSAGES[:3]:
        assert engagement_signal_adapter.validate_json(m.model_dump_json()) == m
    for m in MESSAGES[-2:]:
        assert deployment_record_adapter.validate_json(m.model_dump_json()) == m
    assert deployment_record_key(MESSAGES[-2]) == "policy"  # type: ignore[arg-type]
    assert deployment_record_key(MESSAGES[-1]) == "policy#d1"  # type: ignore[arg-type]


def test_aggregate_rates_are_derived() -> None:
    agg = MESSAGES[2]
    assert isinstance(agg, ArmWindowAggregate)
    assert agg.breadth == pytest.approx(0.8) and agg.mean_depth == pytest.approx(2.25)
    assert agg.continue_rate == pytest.approx(5 / 9)


@pytest.mark.parametrize(
    ("model", "doc", "field"),
    [
        (OffsetRange, '{"topic":"t","partition":0,"from_offset":5,"to_offset":4}', ""),
        (
            TrainJobRequest,
            '{"job_id":"j","kind":"ppo","model":"policy","inputs":[],"created_ts":"2026-01-01T00:00:00Z"}',
            "kind",
        ),
        (
            CheckpointManifest,
            '{"model":"policy","version":"../../etc","parent":null,"kind":"full","status":"published","created_ts":"2026-01-01T00:00:00Z"}',
            "version",
        ),
        (
            CheckpointManifest,
            '{"model":"policy","version":"v1","parent":null,"kind":"full","lora_base":"base","status":"published","created_ts":"2026-01-01T00:00:00Z"}',
            "",
        ),
        (
            DeploymentState,
            '{"model":"policy","baseline_version":"v1","share_bp":20000,"experiment_salt":"s","updated_ts":"2026-01-01T00:00:00Z"}',
            "share_bp",
        ),
    ],
)
def test_bad_values_name_the_field(model: type, doc: str, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_message(model, doc)
    assert info.value.field == field


def test_topic_namespace_prefixes_every_name() -> None:
    topics = Topics("staging")
    assert topics.chat_events == "staging.chat.events"
    assert all(s.name.startswith("staging.") for s in topics.specs())
    compacted = {s.name for s in topics.specs() if s.cleanup == "compact"}
    assert compacted == {"staging.models.checkpoints", "staging.serving.deployments"}


def test_window_aggregate_counters_are_the_window_counters_fields() -> None:
    names = WindowCounters.counter_names()
    assert tuple(ArmWindowAggregate.model_fields)[-len(names) :] == names  # same names, same order
    counts = WindowCounters(sessions=2, user_turns=5, responses=4, continued=1, users_engaged=1, users_active=4)
    counts.latency_buckets[3] = 4
    agg = ArmWindowAggregate.of(counts, arm="candidate", model_version="v2", window_start=NOW, window_s=60, partition=1)
    assert agg.latency_buckets == (0, 0, 0, 4, 0, 0, 0, 0, 0, 0) and agg.counters() == counts
    assert (agg.continue_rate, agg.mean_depth, agg.breadth, agg.violation_rate) == (0.25, 2.5, 0.25, 0.0)
    assert (counts.continue_rate, counts.mean_depth, counts.breadth) == (0.25, 2.5, 0.25)  # one definition
    total = WindowCounters()
    for part in (counts, agg.counters()):
        total.add(part)
    assert (total.responses, total.latency_buckets[3]) == (8, 8)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_trusted_construction_is_the_validated_message(message: Message) -> None:
    values = {name: getattr(message, name) for name in type(message).model_fields}
    trusted = type(message).trusted(**values)
    assert trusted == message and trusted.to_json_bytes() == message.model_dump_json().encode()


def test_trusted_construction_refuses_unknown_fields_and_fails_on_missing_ones() -> None:
    job = TrainJobRequest.trusted(
        job_id="j",
        kind="sft",
        model="m",
        inputs=(OffsetRange(topic="t", partition=0, from_offset=0, to_offset=1),),
        created_ts=NOW,
        config={},
    )
    assert job.to_json_bytes() == TrainJobRequest.model_validate_json(job.to_json_bytes()).to_json_bytes()
    with pytest.raises(TypeError, match="no field 'colour'"):
        SessionSummary.trusted(colour="red")
    with pytest.raises(PydanticSerializationError, match="_NotGiven"):
        SessionSummary.trusted(user_id="u").to_json_bytes()


def test_manifest_without_lora_base_still_reads() -> None:
    """Manifests written before ``lora_base`` existed parse, with None."""
    doc = '{"model":"policy","version":"v2","parent":"v1","kind":"lora","status":"published","created_ts":"2026-01-01T00:00:00Z"}'
    assert parse_message(CheckpointManifest, doc).lora_base is None
