"""deploy/local scripts are idempotent and the services they start are the real ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.prometheus]


def test_up_is_idempotent_and_prints_settings(kafka_settings, redis_url, prometheus_url) -> None:
    run = subprocess.run([str(ROOT / "deploy/local/up")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "already listening" in run.stderr  # nothing restarted
    exports = dict(line.removeprefix("export ").split("=", 1) for line in run.stdout.splitlines())
    assert exports["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] == kafka_settings.bootstrap_servers
    assert exports["FLYWHEEL_REDIS_URL"] == redis_url
    assert exports["FLYWHEEL_PROMETHEUS_URL"] == prometheus_url


def test_redis_is_a_real_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.info("server")["redis_version"].startswith("7")


def test_status_commands(kafka_settings) -> None:
    for script in ("kafka.sh", "redis.sh", "prometheus.sh"):
        run = subprocess.run(
            [str(ROOT / "deploy/local" / script), "status"], capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 0 and " up " in run.stdout
