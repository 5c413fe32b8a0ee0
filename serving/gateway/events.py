"""Chat-event logging off the request path.

Requests append events to a bounded in-memory buffer (never blocking, no lock handed
between threads per event); a background thread drains it into the bus in batches. A
slow broker therefore never adds latency to a request, and the buffer absorbs it; only
when the buffer is full are events dropped, and every drop is counted
(``flywheel_serving_event_buffer_overflow_total``) and reported by ``stats()`` and ``/health``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from schemas import ChatEventBase, FlywheelError
from serving import _metrics as m
from streams import Producer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventLogStats:
    queued: int
    sent: int
    overflowed: int
    failed: int


class EventLogger:
    def __init__(
        self,
        producer: Producer,
        topic: str,
        capacity: int = 10_000,
        batch: int = 500,
        flush_interval_s: float = 0.05,
        max_attempts: int = 5,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._capacity = capacity
        # deque.append / popleft are atomic in CPython: the request path takes no lock.
        self._buffer: deque[ChatEventBase] = deque()
        self._batch = batch
        self._flush_interval_s = flush_interval_s
        self._max_attempts = max_attempts
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sleeping = False
        self._thread: threading.Thread | None = None
        self._draining = 0
        self.sent = 0
        self.overflowed = 0
        self.failed = 0

    def log(self, event: ChatEventBase) -> bool:
        """Buffer ``event``; False (and counted) when the buffer is full. Never blocks."""
        if len(self._buffer) >= self._capacity:
            self.overflowed += 1
            m.EVENTS_OVERFLOW.inc()
            return False
        self._buffer.append(event)
        if self._sleeping:  # wake the drain thread only when it idles: no lock per event when busy
            self._wake.set()
        return True

    def stats(self) -> EventLogStats:
        return EventLogStats(len(self._buffer), self.sent, self.overflowed, self.failed)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gateway-events", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain what is buffered (up to ``timeout_s``), then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        try:
            self._producer.flush(timeout_s)
        except FlywheelError as exc:
            log.warning("final flush of chat events failed: %s", exc)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything buffered so far was handed to the bus and delivered."""
        deadline = time.monotonic() + timeout_s
        while (self._buffer or self._draining) and time.monotonic() < deadline:
            time.sleep(0.005)
        self._producer.flush(max(0.1, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            if not self._buffer:
                if self._stop.is_set():
                    return
                m.EVENT_BUFFER.set(0)
                self._sleeping = True
                if not self._buffer:  # an event appended before the flag was set is not missed
                    self._wake.wait(self._flush_interval_s)
                self._wake.clear()
                self._sleeping = False
                continue
            self._draining = 1
            try:
                batch: list[ChatEventBase] = []
                while self._buffer and len(batch) < self._batch:
                    batch.append(self._buffer.popleft())
                for event in batch:
                    self._send(event)
                try:
                    self._producer.flush(30.0)
                except FlywheelError as exc:
                    log.warning("chat events delivery failed: %s", exc)
                m.EVENT_BUFFER.set(len(self._buffer))
            finally:
                self._draining = 0

    def _send(self, event: ChatEventBase) -> None:
        # The gateway builds its events as validated models; serialise once, no second validation.
        raw = event.to_json_bytes()
        for attempt in range(self._max_attempts):
            try:
                self._producer.produce(self._topic, raw, key=event.user_id)
                self.sent += 1
                m.EVENTS_LOGGED.labels(getattr(event, "type", "unknown")).inc()
                return
            except FlywheelError as exc:  # broker queue full or away: back off, then retry
                if attempt + 1 == self._max_attempts:
                    self.failed += 1
                    m.EVENTS_FAILED.inc()
                    log.warning("dropping chat event %s after %d attempts: %s", event.event_id, self._max_attempts, exc)
                    return
                time.sleep(min(1.0, 0.05 * 2**attempt))
