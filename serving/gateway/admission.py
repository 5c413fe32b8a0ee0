"""Admission control in front of one engine: at most ``max_running`` requests generate at
once, at most ``max_queued`` wait (first come, first served) for one of them, and any
request past that is refused at once with OverloadedError (HTTP 429, Retry-After).

Nothing waits without bound: a waiting request leaves the queue when it is cancelled (the
client left, or its deadline passed), and a slot it was handed in that instant goes to the
next one. One event loop drives it (the gateway's); it takes no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from serving import _metrics as m
from serving._errors import OverloadedError


class Admission:
    def __init__(self, max_running: int, max_queued: int, retry_after_s: float = 1.0) -> None:
        if max_running < 1:
            raise ValueError(f"max_running ({max_running}) must be at least 1")
        self.max_running = max_running
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._running_gauge = m.ADMISSION.labels("running")
        self._queued_gauge = m.ADMISSION.labels("queued")

    @property
    def queued(self) -> int:
        return len(self._waiting)

    async def acquire(self) -> None:
        """Take a running slot, waiting in the queue for one if need be; call ``release()``
        once the request is over. Raises OverloadedError when the queue is full."""
        if self.running < self.max_running and not self._waiting:
            self.running += 1
            self._running_gauge.set(self.running)
            return
        if len(self._waiting) >= self.max_queued:
            raise OverloadedError(
                f"the engine is busy ({self.running} requests running, {len(self._waiting)} queued); "
                f"retry after {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._queued_gauge.set(len(self._waiting))
        try:
            await waiter  # release() hands its slot over: ``running`` already counts this request
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # release() may have dropped it already
                    self._waiting.remove(waiter)
                self._queued_gauge.set(len(self._waiting))
            raise

    def release(self) -> None:
        """Give a running slot back: to the first waiter, or to the pool."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._queued_gauge.set(len(self._waiting))
                return
        self._queued_gauge.set(0)
        self.running -= 1
        self._running_gauge.set(self.running)
