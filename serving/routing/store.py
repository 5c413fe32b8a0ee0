"""Routing state shared by gateway replicas: the latest ``DeploymentState`` per public
model name. The deployment controller is the only writer; gateways read.

``RedisRoutingStore`` is the production store (every replica agrees); ``MemoryRoutingStore``
serves the single-process demo. Both keep a monotonically increasing revision so a reader
can tell that the state changed.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

import redis

from schemas import DeploymentState, ServingError


@runtime_checkable
class RoutingStore(Protocol):
    def get(self, model: str) -> DeploymentState | None:
        """The latest state of ``model`` (None: never deployed)."""

    def put(self, state: DeploymentState) -> None:
        """Replace the state of ``state.model``. Only the deployment controller calls this."""

    def models(self) -> list[str]: ...

    def close(self) -> None: ...


class MemoryRoutingStore:
    """In-process store for the embedded demo and unit tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}

    def get(self, model: str) -> DeploymentState | None:
        with self._lock:
            return self._states.get(model)

    def put(self, state: DeploymentState) -> None:
        with self._lock:
            self._states[state.model] = state

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def close(self) -> None:
        pass


class RedisRoutingStore:
    """State in Redis under ``<prefix>:state:<model>`` (JSON of DeploymentState).

    Reads are served from a local copy refreshed at most every ``refresh_s`` seconds, so
    the request path does not pay a Redis round trip per request; writes go straight to
    Redis and update the local copy. A gateway therefore sees a change at most
    ``refresh_s`` late, which is why the hot-swap controller keeps an old version loaded
    for a grace period longer than that before unloading it.
    """

    def __init__(self, url: str, prefix: str = "flywheel:routing", refresh_s: float = 0.25) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2.0)
        self._prefix = prefix
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, DeploymentState | None]] = {}

    def _key(self, model: str) -> str:
        return f"{self._prefix}:state:{model}"

    def get(self, model: str) -> DeploymentState | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(model)
        if cached is not None and now - cached[0] < self._refresh_s:
            return cached[1]
        try:
            raw = self._client.get(self._key(model))
        except redis.RedisError as exc:
            if cached is not None:
                return cached[1]  # keep serving the last known routing while Redis is away
            raise ServingError(f"routing store unavailable: {exc}", retry_after_s=1.0) from None
        state = DeploymentState.model_validate_json(raw) if raw else None
        with self._lock:
            self._cache[model] = (now, state)
        return state

    def put(self, state: DeploymentState) -> None:
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._key(state.model), state.model_dump_json())
            pipe.sadd(f"{self._prefix}:models", state.model)
            pipe.execute()
        except redis.RedisError as exc:
            raise ServingError(f"routing store write failed: {exc}", retry_after_s=1.0) from None
        with self._lock:
            self._cache[state.model] = (time.monotonic(), state)

    def models(self) -> list[str]:
        members = self._client.smembers(f"{self._prefix}:models")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def delete_all(self) -> None:
        """Remove every key under the prefix (tests)."""
        for key in self._client.scan_iter(f"{self._prefix}:*"):
            self._client.delete(key)

    def close(self) -> None:
        self._client.close()
