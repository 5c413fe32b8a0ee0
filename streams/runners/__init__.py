"""Runners that drive the transport-free processors: the transactional runner (Kafka
transactions, exactly-once; the default), Faust (at-least-once with offset-aware state)
and embedded (the transactional runner on the in-process bus)."""

from streams.runners._changelog import changelog_topic
from streams.runners.embedded import EmbeddedRunner
from streams.runners.faust import FaustRunner
from streams.runners.runner_config import RunnerConfig, StreamsSettings
from streams.runners.transactional import TransactionalRunner

__all__ = ["EmbeddedRunner", "FaustRunner", "RunnerConfig", "StreamsSettings", "TransactionalRunner", "changelog_topic"]
