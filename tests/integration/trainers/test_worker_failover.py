"""Two trainer workers on the real Kafka and Redis; the first is SIGKILLed mid-training.
Exactly one checkpoint version results, published, with the job's exact lineage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from schemas import CheckpointManifest, Topics
from streams import KafkaBus, KafkaSettings, TopicPartition
from tests.unit.trainers.worker_helpers import produce_sft_samples, submit_job
from trainers.registry import CheckpointRegistry, RegistrySettings, version_for_job

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]


def _worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flywheel",
            "trainers",
            "run",
            "--max-jobs",
            "1",
            "--worker-id",
            name,
            "--idle-exit-s",
            "240",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_killed_worker_job_is_redone_once(
    kafka_settings: KafkaSettings,
    redis_url: str,
    topics: Topics,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    lease_prefix = unique("flywheel:test:lease") + ":"
    r = redis.Redis.from_url(redis_url)
    try:
        ranges = produce_sft_samples(bus, topics, 48)
        job = submit_job(bus, topics, unique("job"), ranges, epochs=3.0, batch_size=4)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "FLYWHEEL_BUS": "kafka",
            "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "FLYWHEEL_TOPIC_NAMESPACE": topics.namespace,
            "FLYWHEEL_REDIS_URL": redis_url,
            "FLYWHEEL_TRAINERS__GROUP_ID": unique("trainers"),
            "FLYWHEEL_TRAINERS__LEASE_PREFIX": lease_prefix,
            "FLYWHEEL_TRAINERS__LEASE_TTL_S": "6",
            "FLYWHEEL_TRAINERS__LEASE_RENEW_S": "1",
            "FLYWHEEL_TRAINERS__SESSION_TIMEOUT_MS": "6000",
            "FLYWHEEL_TRAINERS__RETRY_BACKOFF_S": "0.5",
            "FLYWHEEL_TRAINERS__REGISTRY__ROOT": str(tmp_path / "registry"),
            "FLYWHEEL_TRAINERS__WORK_DIR": str(tmp_path / "work"),
            "FLYWHEEL_TRAINERS__GATE__PROMPTS_PER_CHARACTER": "4",
            # This test is about exactly-once, not about the gate's verdict on a tiny sample.
            "FLYWHEEL_TRAINERS__GATE__IF_TOLERANCE": "1.0",
            "FLYWHEEL_TRAINERS__GATE__VIOLATION_TOLERANCE": "1.0",
            "FLYWHEEL_TRAINERS__SFT__NUM_CANDIDATES": "1",
        }
        first = _worker("w1", env, tmp_path / "w1.log")
        _wait(lambda: r.get(lease_prefix + job.job_id) == b"w1", 240, "w1 to take the job's lease")
        second = _worker("w2", env, tmp_path / "w2.log")
        time.sleep(4)  # w1 is reading samples / training by now
        registry = CheckpointRegistry(RegistrySettings(root=tmp_path / "registry"))
        version = version_for_job(job.job_id)
        assert first.poll() is None and not registry.exists("tiny", version), "w1 finished before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert second.wait(400) == 0, (tmp_path / "w2.log").read_text()[-3000:]

        consumer = bus.consumer(None)
        consumer.assign({TopicPartition(topics.models_checkpoints, 0): 0})
        records = []
        for _ in range(20):
            records += consumer.consume(100, 0.5)
            if (
                records
                and consumer.position([TopicPartition(topics.models_checkpoints, 0)]).get(
                    TopicPartition(topics.models_checkpoints, 0), 0
                )
                >= consumer.watermarks(TopicPartition(topics.models_checkpoints, 0))[1]
            ):
                break
        consumer.close()
        manifests = [CheckpointManifest.model_validate_json(rec.value) for rec in records]
        assert [m.version for m in manifests] == [version]
        (manifest,) = manifests
        assert manifest.status == "published" and manifest.lineage == job.inputs
        assert [m.version for m in registry.list("tiny") if m.version != "base"] == [version]
        assert registry.open("tiny", version).manifest == manifest
        assert r.get(lease_prefix + job.job_id) is None  # released after the commit
    finally:
        for key in r.scan_iter(lease_prefix + "*"):
            r.delete(key)
        bus.delete_topics(t.name for t in topics.specs())
        bus.close()
