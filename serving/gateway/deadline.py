"""The deadline of one request, enforced at every await on the engine.

One timer per request: when it fires while the request awaits the engine (its first
delta, the next one, a queue slot, a retry pause), it cancels that await, and the
engine's stream sees the cancellation as it would a client going away (the embedded
engine stops the row, vLLM's connection closes). ``wait`` raises DeadlineExceededError
then, and at once when the deadline has already passed (e.g. while a slow client was
being sent the previous chunk).

Why not ``asyncio.timeout`` around each await: a streamed reply awaits the engine once per
token, and entering and leaving an ``asyncio.timeout`` costs ~7 µs each time (measured,
uvloop, Python 3.11), against two attribute writes here. A timeout scope cannot span the
whole relay either: a streaming relay is an async generator, and a cancel scope across
its ``yield`` would cancel whatever its consumer awaits (sending bytes to the client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from serving._errors import DeadlineExceededError

T = TypeVar("T")


class Deadline:
    __slots__ = ("_handle", "_loop", "_waiter", "expired", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(timeout_s, self._fire)
        self._waiter: asyncio.Task[object] | None = None
        self.expired = False

    def _fire(self) -> None:
        self.expired = True
        if self._waiter is not None:
            self._waiter.cancel()

    def error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the request ran past its deadline of {self.timeout_s:g} s; generation was stopped",
            timeout_s=self.timeout_s,
        )

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the deadline passes first (then DeadlineExceededError)."""
        if self.expired:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: close it so it is not reported as never awaited
            raise self.error()
        task = asyncio.current_task()
        self._waiter = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours when we expired it, unless someone else cancelled the task too (then
            # uncancel() leaves their request pending and the cancellation goes on).
            if self.expired and task is not None and task.uncancel() == 0:
                raise self.error() from None
            raise
        finally:
            self._waiter = None

    def cancel(self) -> None:
        """Stop the timer (the request is over)."""
        self._handle.cancel()
