"""`flywheel topics create` against the real broker: partitions, cleanup policy, idempotent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import ConfigResource

from schemas import TOPICS, Topics
from streams import KafkaBus, KafkaSettings

pytestmark = [pytest.mark.kafka]


def test_create_twice(kafka_settings: KafkaSettings, topics: Topics) -> None:
    env = {
        **os.environ,
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FLYWHEEL_TOPIC_NAMESPACE": topics.namespace,
    }
    cmd = [sys.executable, "-m", "flywheel", "topics", "create"]
    bus = KafkaBus(kafka_settings)
    try:
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count(" created") == len(TOPICS)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0 and second.stdout.count(" exists") == len(TOPICS)
        resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in topics.specs()]
        described = {r.name: f.result() for r, f in bus.admin.describe_configs(resources).items()}
        for spec in topics.specs():
            assert bus.partitions(spec.name) == spec.partitions
            assert described[spec.name]["cleanup.policy"].value == spec.cleanup
    finally:
        bus.delete_topics(t.name for t in topics.specs())
