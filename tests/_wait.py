"""Waiting in tests: poll a condition until a deadline, never sleep a fixed time and hope.

A fixed sleep is either too short on a loaded machine (the test races) or longer than
needed everywhere else (the suite is slow); a wait on the condition is neither.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_SHOWN_CHARS = 1000


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + f"… ({len(text)} chars)"


def _timed_out(what: str, timeout_s: float, value: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last value: {_shown(value)}")


def wait_until(predicate: Callable[[], T], timeout_s: float, every_s: float = 0.05, what: str = "the condition") -> T:
    """Call ``predicate`` every ``every_s`` seconds until it returns a truthy value; return that value.

    Raises AssertionError naming ``what`` and the last value seen when ``timeout_s`` passes
    first. An exception from ``predicate`` propagates at once, so a predicate can stop the
    wait early (e.g. assert that the process it waits on is still alive).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, value)
        time.sleep(every_s)  # the poll interval


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]], timeout_s: float, every_s: float = 0.05, what: str = "the condition"
) -> T:
    """``wait_until`` inside an event loop: the loop keeps running between polls, and
    ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, value)
        await asyncio.sleep(every_s)  # the poll interval
