"""Two trainer workers on the real Kafka and Redis; the first is SIGKILLed mid-training.
Exactly one checkpoint version results, published, with the job's exact lineage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from schemas import CheckpointManifest, Topics
from streams import KafkaBus, KafkaSettings, Record, TopicPartition
from tests._wait import wait_until
from tests.unit.trainers.worker_helpers import produce_sft_samples, submit_job
from trainers.registry import CheckpointRegistry, RegistryConfig, version_for_job

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
        # w1's temporary files go to a folder of its own: the SFT trainer's work folder
        # (flywheel-sft-*) appears there when training starts and goes when it ends.
        w1_tmp = tmp_path / "w1-tmp"
        w1_tmp.mkdir()
        first = _worker("w1", {**env, "TMPDIR": str(w1_tmp)}, tmp_path / "w1.log")
        wait_until(lambda: r.get(lease_prefix + job.job_id) == b"w1", 240, what="w1 to take the job's lease")
        second = _worker("w2", env, tmp_path / "w2.log")

        def training() -> bool:
            assert first.poll() is None, (
                "w1 exited before it could be killed:\n" + (tmp_path / "w1.log").read_text()[-3000:]
            )
            return any(w1_tmp.glob("flywheel-sft-*"))

        wait_until(training, 240, what="w1 to start training (its flywheel-sft-* work folder)")
        registry = CheckpointRegistry(RegistryConfig(root=tmp_path / "registry"))
        version = version_for_job(job.job_id)
        assert not registry.exists("tiny", version), "w1 published before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert second.wait(400) == 0, (tmp_path / "w2.log").read_text()[-3000:]

        checkpoints = TopicPartition(topics.models_checkpoints, 0)
        consumer = bus.consumer(None)
        consumer.assign({checkpoints: 0})
        records: list[Record] = []

        def read_to_end() -> bool:
            records.extend(consumer.consume(100, 0.5))
            return (
                bool(records)
                and consumer.position([checkpoints]).get(checkpoints, 0) >= consumer.watermarks(checkpoints)[1]
            )

        try:
            wait_until(read_to_end, 30, every_s=0, what="models.checkpoints, read to its end")
        finally:
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
