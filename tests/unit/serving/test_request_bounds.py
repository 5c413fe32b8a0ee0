"""The pieces that bound a request, without a server: the context check, admission to the
engine (bounded queue), the deadline, and API-key matching and settings."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr, ValidationError

from serving import ContextLengthExceededError, DeadlineExceededError, GatewayConfig, OverloadedError
from serving._auth import bearer_matches
from serving.engines import ContextWindow, GenerationRequest, ModelSource, SamplingParams
from serving.engines.base import Messages
from serving.gateway import Admission
from serving.gateway.deadline import Deadline
from serving.gateway.prompt_fit import INLINE_COUNT_CHARS, fit_prompt
from tests._wait import wait_until_async
from tests.kits.scripted_engine import ScriptedEngine


def _request(text: str, max_tokens: int = 16) -> GenerationRequest:
    return GenerationRequest("r", ({"role": "user", "content": text},), SamplingParams(max_tokens=max_tokens))


def test_the_context_window_refuses_by_length_then_by_count() -> None:
    window = ContextWindow(tokens=384, max_token_chars=16)
    assert window.check(384 * 16) is None  # could fit: needs counting
    with pytest.raises(ContextLengthExceededError) as by_length:
        window.check(2_000_000)
    assert by_length.value.counted is False and by_length.value.prompt_tokens == 125_000
    assert by_length.value.param == "messages" and "at least 125000 tokens" in str(by_length.value)
    assert window.check(100, prompt_tokens=380) == 4  # room left for the reply
    with pytest.raises(ContextLengthExceededError) as by_count:
        window.check(100, prompt_tokens=384)
    assert by_count.value.counted is True and "384 tokens" in str(by_count.value)
    assert ContextWindow(384, None).check(10**9) is None  # no pre-check without a token bound


def test_fit_prompt_refuses_without_counting_clamps_and_counts_long_prompts_off_the_loop() -> None:
    class CountingEngine(ScriptedEngine):
        def __init__(self) -> None:
            super().__init__(context_tokens=384, max_token_chars=16)
            self.counted: list[int] = []

        def count_prompt_tokens(self, version: str, messages: Messages) -> int | None:
            self.counted.append(len(messages[0]["content"]))
            return super().count_prompt_tokens(version, messages)

    async def run() -> None:
        engine = CountingEngine()
        await engine.load(ModelSource("v1", None))
        with pytest.raises(ContextLengthExceededError):
            await fit_prompt(engine, "v1", _request("x" * 2_000_000))
        assert engine.counted == []  # refused by its length: never tokenised
        with pytest.raises(ContextLengthExceededError) as full:
            await fit_prompt(engine, "v1", _request("ab " * 400))
        assert full.value.counted and full.value.prompt_tokens == 400
        clamped = await fit_prompt(engine, "v1", _request("ab " * 380, max_tokens=50))
        assert clamped.params.max_tokens == 4
        short = _request("hello there", max_tokens=50)
        assert await fit_prompt(engine, "v1", short) is short
        long_text = "abcdefgh " * (INLINE_COUNT_CHARS // 9 + 10)
        assert (await fit_prompt(engine, "v1", _request(long_text))).params.max_tokens == 16
        assert engine.counted[-1] == len(long_text)
        unbounded = ScriptedEngine()
        await unbounded.load(ModelSource("v1", None))
        huge = _request("x" * 2_000_000)
        assert await fit_prompt(unbounded, "v1", huge) is huge  # context unknown: unchanged

    asyncio.run(run())


def test_admission_queues_up_to_its_bound_then_refuses_with_retry_after() -> None:
    async def run() -> None:
        gate = Admission(max_running=2, max_queued=1, retry_after_s=3.0)
        await gate.acquire()
        await gate.acquire()
        waiting = asyncio.ensure_future(gate.acquire())
        await wait_until_async(lambda: gate.queued == 1, 5, every_s=0.001, what="the third request to queue")
        with pytest.raises(OverloadedError) as full:
            await gate.acquire()
        assert full.value.retry_after_s == 3.0
        gate.release()  # the slot goes to the waiter, not to the pool
        await waiting
        assert gate.running == 2 and gate.queued == 0
        gate.release()
        gate.release()
        assert gate.running == 0

    asyncio.run(run())


def test_a_cancelled_waiter_leaves_the_queue_and_never_keeps_a_slot() -> None:
    async def run() -> None:
        gate = Admission(max_running=1, max_queued=2)
        await gate.acquire()
        first = asyncio.ensure_future(gate.acquire())
        second = asyncio.ensure_future(gate.acquire())
        await wait_until_async(lambda: gate.queued == 2, 5, every_s=0.001, what="two requests to queue")
        first.cancel()  # the client left while waiting
        await asyncio.gather(first, return_exceptions=True)
        assert gate.queued == 1
        gate.release()
        second.cancel()  # handed the slot and cancelled in the same instant: the slot is passed on
        await asyncio.gather(second, return_exceptions=True)
        assert gate.running == 0 and gate.queued == 0
        await gate.acquire()  # nothing leaked: a new request gets the slot at once
        assert gate.running == 1

    asyncio.run(run())


def test_the_deadline_stops_an_await_and_counts_the_queue_wait() -> None:
    async def run() -> None:
        gate = Admission(max_running=1, max_queued=4)
        await gate.acquire()
        deadline = Deadline(0.05)
        with pytest.raises(DeadlineExceededError) as late:
            await deadline.wait(gate.acquire())  # queued behind a request that never ends
        assert late.value.timeout_s == 0.05 and gate.queued == 0
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the deadline's cancellation was taken back
        with pytest.raises(DeadlineExceededError):
            await deadline.wait(asyncio.sleep(0))  # already expired: refused at once
        deadline.cancel()

        stopped: list[str] = []

        async def endless() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append("engine stream closed")

        with pytest.raises(DeadlineExceededError):
            await Deadline(0.05).wait(endless())
        assert stopped == ["engine stream closed"]

        on_time = Deadline(30)
        assert await on_time.wait(asyncio.sleep(0, "done")) == "done"
        on_time.cancel()

    asyncio.run(run())


def test_a_cancellation_from_elsewhere_is_not_taken_for_the_deadline() -> None:
    async def run() -> None:
        deadline = Deadline(30)
        task = asyncio.ensure_future(deadline.wait(asyncio.Event().wait()))
        await asyncio.sleep(0)
        task.cancel()  # the client left
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline.cancel()

    asyncio.run(run())


def test_bearer_matching_and_the_api_keys_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = (SecretStr("key-one"), SecretStr("key-two"))
    assert bearer_matches("Bearer key-two", keys) and bearer_matches("bearer  key-one ", keys)
    assert not bearer_matches("Bearer key-three", keys)
    assert not bearer_matches("key-one", keys) and not bearer_matches(None, keys)
    assert not bearer_matches("Bearer ", (SecretStr(""),))
    with pytest.raises(ValidationError, match="blank"):
        GatewayConfig(api_keys=(SecretStr(" "),))

    from flywheel.settings import load_settings

    monkeypatch.setenv("FLYWHEEL_SERVING__GATEWAY__API_KEYS", '["key-one", "key-two"]')
    monkeypatch.setenv("FLYWHEEL_SERVING__GATEWAY__MAX_BODY_BYTES", "4096")
    gateway = load_settings().serving.gateway
    assert [k.get_secret_value() for k in gateway.api_keys] == ["key-one", "key-two"]
    assert gateway.max_body_bytes == 4096
    assert "key-one" not in repr(gateway)
