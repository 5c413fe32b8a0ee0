from __future__ import annotations

import pytest

from serving._errors import ModelNotFoundError
from serving.routing import BUCKETS, ConversationPins, MemoryRoutingStore, Route, arm_for, bucket, fnv1a_32, route
from tests._serving import state


def test_fnv1a_matches_the_published_test_vectors() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_bucket_is_stable_and_uniform() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    buckets = [bucket("exp-1", u) for u in users]
    assert buckets == [bucket("exp-1", u) for u in users]
    assert all(0 <= b < BUCKETS for b in buckets)
    share = sum(b < 2000 for b in buckets) / len(buckets)
    assert abs(share - 0.2) < 0.015
    assert [bucket("exp-2", u) for u in users[:50]] != buckets[:50]  # a new salt reshuffles


def test_raising_the_share_only_moves_users_from_baseline_to_candidate() -> None:
    users = [f"u{i}" for i in range(5000)]
    previous = {u: arm_for("s", u, 500) for u in users}
    for share in (2000, 5000, 10_000):
        current = {u: arm_for("s", u, share) for u in users}
        assert all(current[u] == "candidate" for u in users if previous[u] == "candidate")
        previous = current
    assert all(a == "candidate" for a in previous.values())


def test_route_follows_the_state() -> None:
    s = state(baseline="v1", candidate="v2", share_bp=5000, status="canary")
    routes = {route(s, f"u{i}").version for i in range(200)}
    assert routes == {"v1", "v2"}
    assert route(s, None).version == "v1"  # no user id: no experiment unit, baseline
    paused = s.model_copy(update={"status": "paused"})  # a pause freezes the split, it does not end it
    assert {route(paused, f"u{i}").version for i in range(200)} == {"v1", "v2"}
    halted = s.model_copy(update={"status": "halted", "share_bp": 0})
    assert {route(halted, f"u{i}").version for i in range(200)} == {"v1"}
    with pytest.raises(ModelNotFoundError):
        route(state(baseline=None), "u1")


def test_memory_store_round_trip() -> None:
    store = MemoryRoutingStore()
    assert store.get("policy") is None
    s = state()
    store.put(s)
    assert store.get("policy") == s and store.models() == ["policy"]


def test_a_pinned_conversation_keeps_its_version_until_it_is_retired_or_forgotten() -> None:
    pins = ConversationPins(capacity=2)
    ready = {"v1", "v2"}.__contains__
    canary = state(baseline="v1", candidate="v2", share_bp=5000, status="canary")
    pins.pin("c-1", "v1")
    assert pins.route(canary, "c-1", 2, ready) == Route("policy", "baseline", "v1")
    assert pins.route(canary, "c-1", 1, ready) is None  # a first turn is routed afresh
    assert pins.route(canary, "c-1", 2, {"v2"}.__contains__) is None  # not loaded here
    promoted = state(baseline="v2")
    assert pins.route(promoted, "c-1", 2, ready) is None  # v1 retired: route afresh
    pins.pin("c-2", "v2")
    assert pins.route(promoted, "c-2", 3, ready) == Route("policy", "baseline", "v2")
    pins.pin("c-1", "v2")  # c-1 is now the most recently used...
    pins.pin("c-3", "v2")  # ...so c-2 is the one forgotten
    assert len(pins) == 2 and pins.route(promoted, "c-2", 3, ready) is None
    assert pins.route(promoted, "c-1", 3, ready) is not None
    pins.pin(None, "v2")  # no conversation id: nothing to remember
    assert len(pins) == 2
