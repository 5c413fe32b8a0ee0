"""The leader lease against the real Redis: one holder at a time, a larger fencing token
for every new holder, and a store that refuses the writes of a leader that was replaced
(even one whose own clock says its lease still holds: a paused process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from schemas import Topics
from serving import CanaryConfig, CanaryController, RedisRoutingStore
from serving._errors import NotLeaderError, StaleLeaderError
from serving.leader import LeaderConfig, Leadership, RedisLease
from streams import EmbeddedBus
from tests._serving import state
from tests._wait import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


def test_one_holder_at_a_time_and_every_new_holder_a_larger_token(redis_url: str, unique: Callable[[str], str]) -> None:
    prefix = unique("flywheel-test-lease")
    a = RedisLease(redis_url, prefix, "policy", "a", ttl_s=30)
    b = RedisLease(redis_url, prefix, "policy", "b", ttl_s=30)
    try:
        ta = a.acquire()
        assert ta is not None and b.acquire() is None  # held: b neither gets it nor burns a token
        assert a.renew(ta) and not b.renew(ta)  # only the holder extends it
        assert a.current_holder() == f"a:{ta}"
        a.release(ta)
        tb = b.acquire()
        assert tb == ta + 1 and not a.renew(ta)  # a's lease is gone; its renewal says so
        b.release(ta)  # a stale token frees nothing
        assert b.current_holder() == f"b:{tb}"
    finally:
        RedisRoutingStore(redis_url, prefix=prefix).delete_all()
        a.close()
        b.close()


def test_a_replaced_leader_is_fenced_out(redis_url: str, unique: Callable[[str], str], topics: Topics) -> None:
    prefix = unique("flywheel-test-lease")
    config = LeaderConfig(lease_ttl_s=0.4, renew_interval_s=0.1)
    store_a = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0)
    store_b = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0)
    # a's clock stands still: it believes its lease holds, like a process paused past its TTL.
    frozen = 0.0
    lead_a = Leadership(
        config,
        RedisLease(redis_url, prefix, "policy", "a", config.lease_ttl_s),
        "policy",
        on_acquired=lambda t: store_a.claim("policy", t),
        clock=lambda: frozen,
    )
    lead_b = Leadership(
        config,
        RedisLease(redis_url, prefix, "policy", "b", config.lease_ttl_s),
        "policy",
        on_acquired=lambda t: store_b.claim("policy", t),
    )
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    ctl_a = CanaryController(CanaryConfig(), "policy", store_a, bus, topics, leadership=lead_a)
    ctl_b = CanaryController(CanaryConfig(), "policy", store_b, bus, topics, leadership=lead_b)
    try:
        lead_a.step()
        token_a = lead_a.token()
        assert token_a is not None
        with pytest.raises(NotLeaderError):
            ctl_b.bootstrap("v1")  # b does not lead
        ctl_a.bootstrap("v1")
        assert store_b.get("policy").fencing_token == token_a

        # a stops renewing; its lease lapses in Redis and b takes it.
        def b_leads() -> bool:
            lead_b.step()
            return lead_b.is_leader()

        wait_until(b_leads, 10, every_s=0.05, what="b to take the lapsed lease")
        token_b = lead_b.token()
        assert token_b is not None and token_b > token_a
        assert lead_a.token() == token_a  # a still thinks it leads...
        with pytest.raises(StaleLeaderError) as refused:
            ctl_a.start_canary("v2")  # ...but the store refuses its decision
        assert (refused.value.token, refused.value.fence) == (token_a, token_b)
        for write in (
            lambda: store_a.put(state(baseline="v9"), token_a),
            lambda: store_a.put_experiment("policy", "{}", token_a),
            lambda: store_a.set_preparing("policy", "v9", token_a),
            lambda: store_a.add_tried("policy", "v9", token_a),
        ):
            with pytest.raises(StaleLeaderError):
                write()
        after = store_b.get("policy")
        assert after.baseline_version == "v1" and after.candidate_version is None
        assert store_b.preparing("policy") is None and store_b.tried("policy") == set()
        ctl_b.start_canary("v2")  # the new leader's decisions land
        assert store_a.get("policy").candidate_version == "v2"
        assert store_a.get("policy").fencing_token == token_b

        # When a renews at last, it learns it lost the lease and stops acting.
        lead_a.step()
        assert lead_a.token() is None
        assert ctl_a.evaluate_once() is None
    finally:
        ctl_a.close()
        ctl_b.close()
        lead_a.stop()
        lead_b.stop()
        store_a.delete_all()
        store_a.close()
        store_b.close()
