"""Runners that drive the transport-free processors: Kafka (transactions, the default),
Faust (at-least-once with offset-aware state) and embedded (in-process bus)."""

from streams.runners._changelog import changelog_topic
from streams.runners.embedded import EmbeddedRunner
from streams.runners.faust import FaustRunner
from streams.runners.kafka import KafkaRunner
from streams.runners.runner_config import RunnerConfig, StreamsSettings

__all__ = ["EmbeddedRunner", "FaustRunner", "KafkaRunner", "RunnerConfig", "StreamsSettings", "changelog_topic"]
