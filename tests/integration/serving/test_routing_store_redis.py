"""The Redis routing store against the real Redis: replicas agree through Redis; a
reader serves its local copy within the refresh interval and rereads Redis after it; an
unreachable Redis is a typed, retriable error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from schemas import ServingError
from serving import RedisRoutingStore
from tests._serving import port_nobody_listens_on, state
from tests._wait import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


def test_replicas_agree_through_redis(redis_url: str, unique: Callable[[str], str]) -> None:
    prefix = unique("flywheel-test-routing")
    writer = RedisRoutingStore(redis_url, prefix=prefix)
    reader = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0.05)
    try:
        assert reader.get("policy") is None
        writer.put(state(baseline="v1"))
        wait_until(
            lambda: (s := reader.get("policy")) is not None and s.baseline_version == "v1",
            10,
            what="the reader to see baseline v1",
        )
        writer.put(state(baseline="v1", candidate="v2", share_bp=500, status="canary"))
        wait_until(lambda: reader.get("policy").candidate_version == "v2", 10, what="the reader to see candidate v2")
        assert writer.models() == ["policy"]
    finally:
        writer.delete_all()
        writer.close()
        reader.close()


def test_a_reader_serves_its_copy_within_the_refresh_interval(redis_url: str, unique: Callable[[str], str]) -> None:
    """No clock in the assertions: an interval no test outlasts (1 h) against none (0)."""
    prefix = unique("flywheel-test-routing")
    writer = RedisRoutingStore(redis_url, prefix=prefix)
    cached = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=3600)
    uncached = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0)
    try:
        writer.put(state(baseline="v1"))
        assert cached.get("policy").baseline_version == "v1" == uncached.get("policy").baseline_version
        writer.put(state(baseline="v2"))
        assert cached.get("policy").baseline_version == "v1"  # its copy, no Redis round trip
        assert uncached.get("policy").baseline_version == "v2"
        assert writer.get("policy").baseline_version == "v2"  # a write updates the writer's own copy
    finally:
        writer.delete_all()
        for store in (writer, cached, uncached):
            store.close()


def test_unreachable_redis_is_a_retriable_serving_error() -> None:
    with port_nobody_listens_on() as port:
        store = RedisRoutingStore(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(ServingError) as exc:
            store.get("policy")
        store.close()
    assert exc.value.retry_after_s is not None


def test_a_hung_redis_never_stalls_a_read_of_known_routing(redis_url: str, unique: Callable[[str], str]) -> None:
    """The request path reads the local copy only; the background refresh waits on Redis.
    Redis is hung for longer than the client's 2 s socket timeout (``CLIENT PAUSE``): a
    reader that goes to Redis (``refresh_s=0``) times out, one that knows the model
    answers from its copy, and its refresh picks up a change once Redis is back."""
    prefix = unique("flywheel-test-routing")
    writer = RedisRoutingStore(redis_url, prefix=prefix)
    reader = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0.05)
    direct = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0)
    try:
        writer.put(state(baseline="v1"))
        assert reader.get("policy").baseline_version == "v1"  # its first read, from Redis
        admin = redis.Redis.from_url(redis_url)
        admin.execute_command("CLIENT", "PAUSE", 2500, "ALL")
        admin.close()
        assert reader.get("policy").baseline_version == "v1"  # no wait on the hung Redis
        with pytest.raises(ServingError):
            direct.get("policy")
        writer.put(state(baseline="v2"))  # blocks until the pause ends
        wait_until(lambda: reader.get("policy").baseline_version == "v2", 10, what="the refresh to resume")
    finally:
        writer.delete_all()
        for store in (writer, reader, direct):
            store.close()
