"""Job leases on the real Redis (and the in-memory store the demo uses): exclusive,
renewed only by the holder, expiring when the holder stops renewing.

No check here compares a TTL with a fixed sleep: expiry is waited for, and "still held
after its TTL" is shown by a renewal that succeeded after the TTL had passed. TTLs are
seconds, not tenths, so that a loaded machine's scheduling delays stay far inside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests._wait import wait_until
from trainers.worker import InMemoryLeaseStore, LeaseKeeper, LeaseStore, RedisLeaseStore

TTL_S = 2.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, unique: Callable[[str], str]) -> LeaseStore:
    if request.param == "memory":
        return InMemoryLeaseStore()
    return RedisLeaseStore(request.getfixturevalue("redis_url"), prefix=unique("flywheel:test:lease") + ":")


class RecordingStore:
    """A lease store that notes when each successful renewal was asked for."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.renewals_started: list[float] = []

    def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        return self.store.acquire(key, owner, ttl_s)

    def renew(self, key: str, owner: str, ttl_s: float) -> bool:
        started = time.monotonic()
        ok = self.store.renew(key, owner, ttl_s)
        if ok:
            self.renewals_started.append(started)
        return ok

    def release(self, key: str, owner: str) -> None:
        self.store.release(key, owner)

    def holder(self, key: str) -> str | None:
        return self.store.holder(key)


def test_lease_is_exclusive_until_released(store: LeaseStore) -> None:
    assert store.acquire("job", "a", 5) and store.acquire("job", "a", 5)  # re-entrant for its holder
    assert not store.acquire("job", "b", 5) and not store.renew("job", "b", 5)
    store.release("job", "b")  # not the holder: no effect
    assert store.holder("job") == "a"
    store.release("job", "a")
    assert store.acquire("job", "b", 5) and store.holder("job") == "b"
    store.release("job", "b")


def test_lease_expires_without_renewal(store: LeaseStore) -> None:
    before = time.monotonic()
    assert store.acquire("dead", "a", TTL_S)
    wait_until(lambda: store.holder("dead") is None, TTL_S + 15, every_s=0.05, what="the unrenewed lease to expire")
    # Seen gone after the fact, so this bound holds however slow the machine: it fails only
    # for a store that drops a lease before its TTL.
    assert time.monotonic() - before >= TTL_S
    assert store.acquire("dead", "b", 5)
    store.release("dead", "b")


def test_keeper_keeps_the_lease_alive_past_its_ttl(store: LeaseStore) -> None:
    recording = RecordingStore(store)
    assert recording.acquire("kept", "a", TTL_S)
    acquired = time.monotonic()  # the lease's own expiry is earlier than acquired + TTL_S
    with LeaseKeeper(recording, "kept", "a", ttl_s=TTL_S, renew_every_s=0.2) as keeper:
        # A renewal can only succeed while the lease is live, so one begun after the
        # original TTL had run out shows that renewals carried the lease past it.
        wait_until(
            lambda: any(t > acquired + TTL_S for t in recording.renewals_started) or keeper.lost.is_set(),
            TTL_S + 15,
            what="a successful renewal after the original TTL",
        )
        assert not keeper.lost.is_set() and store.holder("kept") == "a"
    store.release("kept", "a")


def test_keeper_reports_a_lost_lease(store: LeaseStore) -> None:
    assert store.acquire("stolen", "a", TTL_S)
    # The keeper's first renewal comes after the TTL (Event.wait never returns early), so
    # the lease expires first, as for a holder that stalled; someone else then takes it.
    with LeaseKeeper(store, "stolen", "a", ttl_s=TTL_S, renew_every_s=TTL_S + 0.5) as keeper:
        wait_until(lambda: store.holder("stolen") is None, TTL_S + 15, what="the stalled holder's lease to expire")
        assert store.acquire("stolen", "b", 5)
        wait_until(keeper.lost.is_set, TTL_S + 15, what="the keeper to report the lease lost")
        assert store.holder("stolen") == "b"  # the failed renewal did not take it back
    store.release("stolen", "b")
