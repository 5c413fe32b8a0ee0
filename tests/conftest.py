"""Shared fixtures. Integration tests use the real Kafka, Redis and Prometheus started by
deploy/local/up (`make test` starts them); they never use doubles of those."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import Topics
from streams import Bus, EmbeddedBus, KafkaBus, KafkaSettings

KAFKA_BOOTSTRAP = os.environ.get("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
REDIS_URL = os.environ.get("FLYWHEEL_REDIS_URL", "redis://127.0.0.1:16379/0")
PROMETHEUS_URL = os.environ.get("FLYWHEEL_PROMETHEUS_URL", "http://127.0.0.1:19090")


def _require_port(address: str, what: str) -> None:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host.split("//")[-1], int(port.split("/")[0])), timeout=2).close()
    except OSError:
        pytest.fail(f"{what} is not reachable at {address}: run `deploy/local/up` (make test does)", pytrace=False)


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    _require_port(KAFKA_BOOTSTRAP, "Kafka")
    return KafkaSettings(bootstrap_servers=KAFKA_BOOTSTRAP, linger_ms=5)


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require_port(REDIS_URL.removeprefix("redis://").rsplit("/", 1)[0], "Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    _require_port(PROMETHEUS_URL.removeprefix("http://"), "Prometheus")
    return PROMETHEUS_URL


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Fresh names for topics, groups and keys: every test gets its own."""
    run = uuid.uuid4().hex[:8]
    return lambda prefix="t": f"{prefix}-{run}"


@pytest.fixture
def topics(unique: Callable[[str], str]) -> Topics:
    return Topics(namespace=unique("test"))


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest, topics: Topics) -> Iterator[Bus]:
    """The same behavioural tests run on both buses, with every topic created fresh."""
    if request.param == "embedded":
        b: Bus = EmbeddedBus()
    else:
        b = KafkaBus(request.getfixturevalue("kafka_settings"))
    b.create_topics(topics.specs())
    yield b
    if isinstance(b, KafkaBus):
        b.delete_topics(t.name for t in topics.specs())
    b.close()


def event_dict(type_: str = "user_message", **overrides: Any) -> dict[str, Any]:
    """A valid chat event as a plain dict; ``overrides`` replace fields."""
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "type": type_,
        "ts": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        "user_id": "user-1",
        "conversation_id": "conv-1",
        "character_id": "char-1",
        "surface": "app",
    }
    per_type: dict[str, dict[str, Any]] = {
        "session_started": {"arm": "baseline", "model_version": "v1"},
        "user_message": {"turn": 1, "text": "hello"},
        "model_response": {
            "turn": 1,
            "text": "hi there?",
            "model_version": "v1",
            "arm": "baseline",
            "request_id": "req-1",
            "latency_ms": 12.5,
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "instructions": [{"kind": "end_with_question"}, {"kind": "max_words", "limit": 20}],
        },
        "user_feedback": {"turn": 1, "kind": "thumbs_up"},
        "session_ended": {"reason": "user_left"},
    }
    base.update(per_type[type_])
    base.update(overrides)
    return base


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return event_dict
