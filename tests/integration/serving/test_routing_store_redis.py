"""The Redis routing store against the real Redis: replicas agree within the refresh
interval; an unreachable Redis is a typed, retriable error."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from schemas import ServingError
from serving import RedisRoutingStore
from serving.testing.vllm_compat_server import free_port
from tests._serving import state

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


def test_replicas_agree_through_redis(redis_url: str, unique: Callable[[str], str]) -> None:
    prefix = unique("flywheel-test-routing")
    writer = RedisRoutingStore(redis_url, prefix=prefix)
    reader = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0.05)
    try:
        assert reader.get("policy") is None
        writer.put(state(baseline="v1"))
        time.sleep(0.06)
        assert reader.get("policy").baseline_version == "v1"
        writer.put(state(baseline="v1", candidate="v2", share_bp=500, status="canary"))
        time.sleep(0.06)
        assert reader.get("policy").candidate_version == "v2"
        assert writer.models() == ["policy"]
    finally:
        writer.delete_all()
        writer.close()
        reader.close()


def test_unreachable_redis_is_a_retriable_serving_error() -> None:
    store = RedisRoutingStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ServingError) as exc:
        store.get("policy")
    assert exc.value.retry_after_s is not None
