"""Job leases on the real Redis (and the in-memory store the demo uses): exclusive,
renewed only by the holder, expiring when the holder stops renewing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from trainers.worker import InMemoryLeaseStore, LeaseKeeper, LeaseStore, RedisLeaseStore


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, unique: Callable[[str], str]) -> LeaseStore:
    if request.param == "memory":
        return InMemoryLeaseStore()
    return RedisLeaseStore(request.getfixturevalue("redis_url"), prefix=unique("flywheel:test:lease") + ":")


def test_lease_is_exclusive_until_released(store: LeaseStore) -> None:
    assert store.acquire("job", "a", 5) and store.acquire("job", "a", 5)  # re-entrant for its holder
    assert not store.acquire("job", "b", 5) and not store.renew("job", "b", 5)
    store.release("job", "b")  # not the holder: no effect
    assert store.holder("job") == "a"
    store.release("job", "a")
    assert store.acquire("job", "b", 5) and store.holder("job") == "b"
    store.release("job", "b")


def test_lease_expires_without_renewal_and_keeper_keeps_it_alive(store: LeaseStore) -> None:
    assert store.acquire("dead", "a", 0.5)
    time.sleep(0.8)
    assert store.holder("dead") is None and store.acquire("dead", "b", 5)
    store.release("dead", "b")
    assert store.acquire("kept", "a", 0.6)
    with LeaseKeeper(store, "kept", "a", ttl_s=0.6, renew_every_s=0.1) as keeper:
        time.sleep(1.5)
        assert store.holder("kept") == "a" and not keeper.lost.is_set()
    store.release("kept", "a")


def test_keeper_reports_a_lost_lease(store: LeaseStore) -> None:
    assert store.acquire("stolen", "a", 0.3)
    with LeaseKeeper(store, "stolen", "a", ttl_s=0.3, renew_every_s=0.5) as keeper:
        time.sleep(0.4)  # expired before the first renewal; someone else takes it
        assert store.acquire("stolen", "b", 5)
        assert keeper.lost.wait(2)
    store.release("stolen", "b")
