"""Which versions an engine can serve right now, and how many requests are in flight on
each. The gateway leases a version for the whole of a request; the hot-swap controller
unloads a version only when its lease count is zero."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from serving._errors import EngineUnavailableError
from serving.engines.base import Engine, ModelSource


class ModelSlots:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._ready: set[str] = set()
        self._in_flight: Counter[str] = Counter()

    def is_ready(self, version: str) -> bool:
        with self._lock:
            return version in self._ready

    def ready(self) -> list[str]:
        with self._lock:
            return sorted(self._ready)

    def in_flight(self, version: str) -> int:
        with self._lock:
            return self._in_flight[version]

    @contextmanager
    def lease(self, version: str) -> Iterator[None]:
        with self._lock:
            if version not in self._ready:
                raise EngineUnavailableError(f"version {version!r} is not loaded here", retry_after_s=0.5)
            self._in_flight[version] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[version] -= 1

    async def load(self, source: ModelSource) -> None:
        """Load into the engine; the version is servable once this returns."""
        await self.engine.load(source)
        with self._lock:
            self._ready.add(source.version)

    def mark_ready(self, version: str) -> None:
        """Declare a version the engine already serves (e.g. a base model a vLLM replica starts with)."""
        with self._lock:
            self._ready.add(version)

    def retire(self, version: str) -> bool:
        """Stop new leases on ``version``; True when nothing is in flight on it any more."""
        with self._lock:
            self._ready.discard(version)
            return self._in_flight[version] == 0

    async def unload(self, version: str) -> None:
        with self._lock:
            self._ready.discard(version)
        await self.engine.unload(version)
