"""The tests' wait helper: returns the first truthy value, and a timeout names what it
waited for and what it saw last."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests._wait import wait_until, wait_until_async


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([0, [], "", [3]])
    assert wait_until(lambda: next(values), 5, every_s=0) == [3]


def test_wait_until_names_what_it_waited_for_and_the_last_value() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"timed out after 0 s waiting for the answer; last value: \[\]"):
        wait_until(lambda: [] if next(counter) < 10**9 else [1], 0, what="the answer")
    assert next(counter) == 1  # polled once, then gave up


def test_a_predicate_that_raises_stops_the_wait_at_once() -> None:
    def dead() -> bool:
        raise AssertionError("the worker exited")

    with pytest.raises(AssertionError, match="the worker exited"):
        wait_until(dead, 60)


def test_wait_until_async_awaits_coroutine_predicates() -> None:
    calls = []

    async def ready() -> str | None:
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert asyncio.run(wait_until_async(ready, 5, every_s=0)) == "ready"
    with pytest.raises(AssertionError, match="waiting for never; last value: None"):
        asyncio.run(wait_until_async(lambda: None, 0, what="never"))
