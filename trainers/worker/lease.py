"""Job leases: at most one live worker trains a given job. A lease expires on its own
when its holder dies (no renewal), so another worker can redo the job."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

from schemas import FlywheelError

# Compare-and-act scripts: only the holder may renew or release its lease.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class LeaseLostError(FlywheelError):
    """The job's lease expired or another worker took it: this worker must not publish or commit."""


class LeaseStore(Protocol):
    """Where leases live (Redis in production, memory in the embedded demo)."""

    def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        """Take the lease if free (or already ours); True on success."""

    def renew(self, key: str, owner: str, ttl_s: float) -> bool:
        """Extend our lease; False if it expired or another owner holds it."""

    def release(self, key: str, owner: str) -> None:
        """Give the lease up (no-op unless we hold it)."""

    def holder(self, key: str) -> str | None: ...


class RedisLeaseStore:
    """Leases as Redis keys with a TTL (``SET NX PX``), renewed and released by the holder only."""

    def __init__(self, url: str, prefix: str = "flywheel:trainers:lease:") -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        k = self._prefix + key
        if self._redis.set(k, owner, nx=True, px=int(ttl_s * 1000)):
            return True
        return bool(self._renew(keys=[k], args=[owner, int(ttl_s * 1000)]))

    def renew(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(self._renew(keys=[self._prefix + key], args=[owner, int(ttl_s * 1000)]))

    def release(self, key: str, owner: str) -> None:
        self._release(keys=[self._prefix + key], args=[owner])

    def holder(self, key: str) -> str | None:
        value = self._redis.get(self._prefix + key)
        return value.decode() if isinstance(value, bytes) else None

    def close(self) -> None:
        self._redis.close()


class InMemoryLeaseStore:
    """Leases in one process (the embedded demo), with the same expiry semantics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> tuple[str, float] | None:
        lease = self._leases.get(key)
        if lease is not None and lease[1] <= time.monotonic():
            del self._leases[key]
            return None
        return lease

    def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            lease = self._live(key)
            if lease is not None and lease[0] != owner:
                return False
            self._leases[key] = (owner, time.monotonic() + ttl_s)
            return True

    def renew(self, key: str, owner: str, ttl_s: float) -> bool:
        with self._lock:
            lease = self._live(key)
            if lease is None or lease[0] != owner:
                return False
            self._leases[key] = (owner, time.monotonic() + ttl_s)
            return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            lease = self._live(key)
            if lease is not None and lease[0] == owner:
                del self._leases[key]

    def holder(self, key: str) -> str | None:
        with self._lock:
            lease = self._live(key)
            return lease[0] if lease else None


class LeaseKeeper:
    """Renews a lease from a background thread while a job runs; ``lost`` is set if a
    renewal fails (the job must then be abandoned, not published)."""

    def __init__(self, store: LeaseStore, key: str, owner: str, ttl_s: float, renew_every_s: float) -> None:
        self.store, self.key, self.owner, self.ttl_s = store, key, owner, ttl_s
        self.renew_every_s = renew_every_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{key}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            try:
                ok = self.store.renew(self.key, self.owner, self.ttl_s)
            except Exception:  # a Redis blip: try again next tick; expiry is the backstop
                continue
            if not ok:
                self.lost.set()
                return
