"""Contracts: every message crossing a process boundary, the topic table, and the
pure verifiers of character instructions and content policy. Imports nothing of the project."""

from schemas._base import DEFAULT_LIMITS, SCHEMA_VERSION, Message, ValidationLimits, parse_message
from schemas._deployments import (
    CanaryAction,
    CanaryDecision,
    DeploymentRecord,
    DeploymentState,
    MetricResult,
    deployment_record_adapter,
    deployment_record_key,
)
from schemas._errors import ConfigError, FlywheelError, SchemaError, ServingError, StreamError, TrainerError
from schemas._events import (
    CHAT_EVENT_TYPES,
    ChatEvent,
    ChatEventBase,
    FeedbackKind,
    ModelResponseEvent,
    SessionEndedEvent,
    SessionStartedEvent,
    UserFeedbackEvent,
    UserMessageEvent,
    chat_event_adapter,
    parse_chat_event,
)
from schemas._export import export_json_schemas, json_schemas
from schemas._instructions import (
    EMOJI,
    AddressUserByName,
    CheckResult,
    EndWithQuestion,
    ExcludeWords,
    IncludeWords,
    Instruction,
    InstructionReport,
    MaxSentences,
    MaxWords,
    NoEmoji,
    PersonaKeywords,
    UseEmoji,
    check_instructions,
    count_sentences,
    follows_instructions,
    instruction_adapter,
    words,
)
from schemas._jobs import CheckpointManifest, EvalReport, FileDigest, JobKind, OffsetRange, TrainJobRequest, check_name
from schemas._policy import DEFAULT_POLICY, PolicyRuleSet, check_policy
from schemas._samples import ChatMessage, EngagementLabels, PreferenceSample, RewardSample, SftSample
from schemas._signals import (
    LATENCY_BUCKETS_MS,
    ArmWindowAggregate,
    EngagementSignal,
    ResponseOutcome,
    SessionSummary,
    engagement_signal_adapter,
)
from schemas._topics import (
    CHAT_EVENTS,
    CHAT_EVENTS_DLQ,
    ENGAGEMENT_SIGNALS,
    MODELS_CHECKPOINTS,
    SAMPLE_TOPICS,
    SAMPLES_PREFERENCE,
    SAMPLES_REWARD,
    SAMPLES_SFT,
    SERVING_DEPLOYMENTS,
    TOPICS,
    TOPICS_BY_NAME,
    TRAINER_JOBS,
    DEFAULT_TOPICS,
    Topics,
    TopicSpec,
)

__all__ = [
    "AddressUserByName", "ArmWindowAggregate", "CHAT_EVENTS", "CHAT_EVENTS_DLQ", "CHAT_EVENT_TYPES",
    "CanaryAction", "CanaryDecision", "ChatEvent", "ChatEventBase", "ChatMessage", "CheckResult",
    "CheckpointManifest", "ConfigError", "DEFAULT_LIMITS", "DEFAULT_POLICY", "DeploymentRecord",
    "DeploymentState", "EMOJI", "ENGAGEMENT_SIGNALS", "EndWithQuestion", "EngagementLabels",
    "EngagementSignal", "EvalReport", "ExcludeWords", "FeedbackKind", "FileDigest", "FlywheelError",
    "IncludeWords", "Instruction", "InstructionReport", "JobKind", "LATENCY_BUCKETS_MS",
    "MODELS_CHECKPOINTS", "MaxSentences", "MaxWords", "Message", "MetricResult", "ModelResponseEvent",
    "NoEmoji", "OffsetRange", "PersonaKeywords", "PolicyRuleSet", "PreferenceSample", "ResponseOutcome",
    "RewardSample", "SAMPLES_PREFERENCE", "SAMPLES_REWARD", "SAMPLES_SFT", "SAMPLE_TOPICS",
    "SCHEMA_VERSION", "SERVING_DEPLOYMENTS", "SchemaError", "ServingError", "SessionEndedEvent",
    "SessionStartedEvent", "SessionSummary", "SftSample", "StreamError", "TOPICS", "TOPICS_BY_NAME",
    "TRAINER_JOBS", "TopicSpec", "Topics", "DEFAULT_TOPICS", "TrainJobRequest", "TrainerError", "UseEmoji", "UserFeedbackEvent",
    "UserMessageEvent", "ValidationLimits", "check_instructions", "check_name", "check_policy",
    "chat_event_adapter", "count_sentences", "deployment_record_adapter", "deployment_record_key",
    "engagement_signal_adapter", "export_json_schemas", "follows_instructions", "instruction_adapter", "json_schemas",
    "parse_chat_event", "parse_message", "words",
]
