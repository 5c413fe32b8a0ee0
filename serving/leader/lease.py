"""A lease on the leadership of one model's controllers, with a fencing token.

Redis: the lease is the key ``<prefix>:leader:<model>`` holding ``<holder>:<token>``, set
with ``NX PX ttl`` and renewed by a compare-and-set script, so only its holder extends or
frees it. The fencing token comes from ``INCR`` on ``<prefix>:leader:<model>:token`` at
each acquisition: every later leader has a larger one, and the routing store refuses a
write whose token is below the last it has seen (``RoutingStore.claim``), so a leader
that lost its lease without noticing (a long pause, a partition) cannot overwrite its
successor's decisions.

``MemoryLease`` is for one process (the embedded demo and unit tests): always held.
"""

from __future__ import annotations

from typing import Protocol

import redis

from serving._errors import LeaseError

# Atomic take: only when nobody holds the lease does the token advance, so followers
# polling a held lease do not burn tokens.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
  return token
end
return 0
"""
# Compare-and-set: extend (or free) the lease only while it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    holder: str

    def acquire(self) -> int | None:
        """Take the lease if it is free: the new fencing token, or None when someone holds it."""

    def renew(self, token: int) -> bool:
        """Extend the lease taken with ``token``; False when it is no longer ours."""

    def release(self, token: int) -> None:
        """Free the lease taken with ``token`` (no-op when it is no longer ours)."""

    def current_holder(self) -> str | None:
        """``<holder>:<token>`` of whoever holds the lease now, None when it is free."""

    def close(self) -> None: ...


class RedisLease:
    def __init__(self, url: str, prefix: str, model: str, holder: str, ttl_s: float) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2.0)
        self.key = f"{prefix}:leader:{model}"
        self.token_key = f"{self.key}:token"
        self.holder = holder
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    def _value(self, token: int) -> str:
        return f"{self.holder}:{token}"

    def acquire(self) -> int | None:
        try:
            token = int(self._acquire(keys=[self.key, self.token_key], args=[self.holder, self._ttl_ms]))
        except redis.RedisError as exc:
            raise LeaseError(f"lease {self.key}: {exc}") from None
        return token or None

    def renew(self, token: int) -> bool:
        try:
            return bool(self._renew(keys=[self.key], args=[self._value(token), self._ttl_ms]))
        except redis.RedisError as exc:
            raise LeaseError(f"lease {self.key}: {exc}") from None

    def release(self, token: int) -> None:
        try:
            self._release(keys=[self.key], args=[self._value(token)])
        except redis.RedisError as exc:
            raise LeaseError(f"lease {self.key}: {exc}") from None

    def current_holder(self) -> str | None:
        try:
            raw = self._client.get(self.key)
        except redis.RedisError as exc:
            raise LeaseError(f"lease {self.key}: {exc}") from None
        return raw.decode() if isinstance(raw, bytes) else raw

    def close(self) -> None:
        self._client.close()


class MemoryLease:
    """One process is the whole fleet: it always holds the lease, with token 1."""

    def __init__(self, holder: str = "local") -> None:
        self.holder = holder

    def acquire(self) -> int | None:
        return 1

    def renew(self, token: int) -> bool:
        return True

    def release(self, token: int) -> None:
        pass

    def current_holder(self) -> str | None:
        return f"{self.holder}:1"

    def close(self) -> None:
        pass
