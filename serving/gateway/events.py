"""Chat-event logging off the request path.

Requests put events into a bounded in-memory buffer (never blocking); a background thread
drains it into the bus. A slow broker therefore never adds latency to a request, and the
buffer absorbs it; only when the buffer is full are events dropped, and every drop is
counted (``flywheel_serving_event_buffer_overflow_total``) and reported by ``stats()``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from schemas import ChatEventBase, FlywheelError
from streams import Producer
from serving import _metrics as m

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventLogStats:
    queued: int
    sent: int
    overflowed: int
    failed: int


class EventLogger:
    def __init__(self, producer: Producer, topic: str, capacity: int = 10_000, batch: int = 500,
                 flush_interval_s: float = 0.05, max_attempts: int = 5) -> None:
        self._producer = producer
        self._topic = topic
        self._queue: queue.Queue[ChatEventBase] = queue.Queue(maxsize=capacity)
        self._batch = batch
        self._flush_interval_s = flush_interval_s
        self._max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.overflowed = 0
        self.failed = 0

    def log(self, event: ChatEventBase) -> bool:
        """Queue ``event``; False (and counted) when the buffer is full. Never blocks."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.overflowed += 1
            m.EVENTS_OVERFLOW.inc()
            return False
        m.EVENT_BUFFER.set(self._queue.qsize())
        return True

    def stats(self) -> EventLogStats:
        return EventLogStats(self._queue.qsize(), self.sent, self.overflowed, self.failed)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gateway-events", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain what is buffered (up to ``timeout_s``), then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        try:
            self._producer.flush(timeout_s)
        except FlywheelError as exc:
            log.warning("final flush of chat events failed: %s", exc)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything queued so far was handed to the bus and delivered."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        self._producer.flush(max(0.1, deadline - time.monotonic()))

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=self._flush_interval_s)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self._batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for event in batch:
                self._send(event)
            try:
                self._producer.flush(30.0)
            except FlywheelError as exc:
                log.warning("chat events delivery failed: %s", exc)
            for _ in batch:
                self._queue.task_done()
            m.EVENT_BUFFER.set(self._queue.qsize())

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
                time.sleep(min(1.0, 0.05 * 2 ** attempt))
