"""The embedded runner: the transactional runner on the in-process bus, plus what a
one-process demo needs — run until idle, a background thread, forced event time."""

from __future__ import annotations

import threading

from schemas import Topics
from streams.bus import Bus
from streams.dlq_config import DeadLetterConfig
from streams.processors import Processor
from streams.runners.runner_config import RunnerConfig
from streams.runners.transactional import TransactionalRunner


class EmbeddedRunner(TransactionalRunner):
    """Drive ``processor`` on ``bus`` (normally an ``EmbeddedBus``) in this process.

    Thread-safe: ``poll_once``, ``run_until_idle`` and ``advance_to`` may be called while
    a background thread (``start(background=True)``) is polling.
    """

    runner_name = "embedded"

    def __init__(
        self,
        bus: Bus,
        processor: Processor,
        topics: Topics,
        group_id: str | None = None,
        config: RunnerConfig | None = None,
        dlq: DeadLetterConfig | None = None,
    ) -> None:
        super().__init__(bus, processor, topics, group_id or f"flywheel-{processor.name}", config, dlq)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def start(self, background: bool = False) -> None:
        """Join the group and restore state; with ``background`` also poll in a daemon thread."""
        with self._lock:
            super().start()
        if background:
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name=f"runner-{self.processor.name}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                if self._consumer is None:
                    return
                n = super().poll_once(timeout_s=0)
            if not n:
                self._halt.wait(self.config.poll_timeout_s)

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            super().stop()

    def poll_once(self, max_records: int | None = None, timeout_s: float | None = None) -> int:
        with self._lock:
            return super().poll_once(max_records, timeout_s)

    def run_until_idle(self, max_records: int | None = None) -> int:
        """Process everything available now, then commit. Returns records processed."""
        total = 0
        with self._lock:
            while (n := super().poll_once(max_records, timeout_s=0)) > 0:
                total += n
            self._pending += 1
            self.commit()
        return total

    def advance_to(self, ts_ms: int) -> int:
        with self._lock:
            return super().advance_to(ts_ms)

    def commit(self) -> None:
        with self._lock:
            super().commit()
