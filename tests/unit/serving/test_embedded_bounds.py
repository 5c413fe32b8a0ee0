"""Bounded requests on the embedded engine (a tiny Llama built here, CPU): its context,
token counts and clamped replies; a 2 MB prompt refused while other requests are served;
a client that leaves, or a deadline that passes, stops its row of the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from serving import ContextLengthExceededError, GatewayConfig, MemoryRoutingStore, create_app
from serving.engines import (
    EmbeddedEngine,
    EmbeddedEngineConfig,
    GenerationRequest,
    ModelSource,
    SamplingParams,
    complete,
)
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from tests._serving import build_tiny_llama, manifest_for, serve_app, state
from tests._wait import wait_until, wait_until_async

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.timeout(120)]

CONTEXT = 4096  # long enough that a reply of ~4,000 tokens takes seconds on a CPU
LONG = 4000


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEngine]:
    path = build_tiny_llama(tmp_path_factory.mktemp("ckpt") / "v1", max_positions=CONTEXT, endless=True)
    eng = EmbeddedEngine(EmbeddedEngineConfig(device="cpu", max_batch_size=8, batch_wait_ms=5, max_new_tokens=CONTEXT))
    asyncio.run(eng.load(ModelSource("v1", path, manifest=manifest_for(path, "v1"))))
    yield eng
    asyncio.run(eng.close())


@contextmanager
def gateway(engine: EmbeddedEngine, **config: Any) -> Iterator[str]:
    slots = ModelSlots(engine)
    slots.mark_ready("v1")
    store = MemoryRoutingStore()
    store.put(state(baseline="v1"))
    settings = GatewayConfig(retry_backoff_s=0.0, max_tokens_limit=CONTEXT, **config)
    with serve_app(create_app(Gateway(settings, store, slots))) as url:
        yield url


def _req(text: str, max_tokens: int, rid: str = "r") -> GenerationRequest:
    return GenerationRequest(
        rid, ({"role": "user", "content": text},), SamplingParams(max_tokens=max_tokens, temperature=0)
    )


def _body(text: str, max_tokens: int, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "policy",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def _idle(engine: EmbeddedEngine) -> bool:
    s = engine.stats()
    return s.running == 0 and s.queued == 0


def test_the_embedded_engine_knows_its_context_counts_prompts_and_clamps_replies(engine: EmbeddedEngine) -> None:
    window = engine.context_window("v1")
    assert window is not None and window.tokens == CONTEXT and engine.context_window("v9") is None
    assert window.max_token_chars == max(len(t) for t in engine._models["v1"].tokenizer.get_vocab())
    messages = ({"role": "user", "content": "hello there friend"},)
    unit = "hello there friend number 7, how are you today? "
    per_unit = (engine.count_prompt_tokens("v1", ({"role": "user", "content": unit * 101},)) or 0) - (
        engine.count_prompt_tokens("v1", ({"role": "user", "content": unit},)) or 0
    )
    near_full = unit * ((CONTEXT - 20) * 100 // per_unit)
    prompt_tokens = engine.count_prompt_tokens("v1", ({"role": "user", "content": near_full},)) or 0
    assert CONTEXT - 60 < prompt_tokens < CONTEXT

    async def run() -> None:
        short = await complete(
            engine, "v1", GenerationRequest("a", messages, SamplingParams(max_tokens=5, temperature=0))
        )
        assert short.prompt_tokens == engine.count_prompt_tokens("v1", messages)
        assert short.completion_tokens == 5 and short.finish_reason == "length"  # endless: runs to max_tokens
        # A long prompt and a short one arrive together: the long one's reply stops at the
        # context, the short one still gets all it asked for.
        long_reply, short_reply = await asyncio.gather(
            complete(engine, "v1", _req(near_full, 100, "long")), complete(engine, "v1", _req("hello", 80, "short"))
        )
        assert long_reply.prompt_tokens == prompt_tokens
        assert long_reply.completion_tokens == CONTEXT - prompt_tokens and long_reply.finish_reason == "length"
        assert short_reply.completion_tokens == 80
        with pytest.raises(ContextLengthExceededError) as full:
            await complete(engine, "v1", _req(near_full + unit * 10, 5))
        assert full.value.counted
        with pytest.raises(ContextLengthExceededError) as huge:
            await complete(engine, "v1", _req("x" * 2_000_000, 5))
        assert not huge.value.counted  # refused by its length, before the engine thread saw it

    asyncio.run(run())


def test_a_2mb_prompt_gets_400_while_the_embedded_engine_serves_others(engine: EmbeddedEngine) -> None:
    with gateway(engine, max_body_bytes=4 * 1024 * 1024) as url:

        async def run() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                ordinary = [
                    asyncio.ensure_future(client.post("/v1/chat/completions", json=_body(f"hello there {i}", 16)))
                    for i in range(8)
                ]
                huge = await client.post("/v1/chat/completions", json=_body("hello there friend " * 110_000, 16))
                done = await asyncio.gather(*ordinary)
            assert huge.status_code == 400 and huge.json()["error"]["code"] == "context_length_exceeded"
            assert [r.status_code for r in done] == [200] * 8
            assert {r.json()["usage"]["completion_tokens"] for r in done} == {16}

        asyncio.run(run())


def test_a_client_that_leaves_stops_its_row_streaming_or_not(engine: EmbeddedEngine) -> None:
    with gateway(engine) as url:
        before = engine.stats().generated_tokens
        with httpx.stream("POST", url + "/v1/chat/completions", json=_body("hello", LONG, stream=True)) as stream:
            lines = stream.iter_lines()
            assert [next(lines) for _ in range(4)]  # it is generating
        wait_until(lambda: _idle(engine), 30, what="the streamed row to stop")
        assert engine.stats().generated_tokens - before < LONG

        async def leave_mid_generation() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                task = asyncio.ensure_future(client.post("/v1/chat/completions", json=_body("hello", LONG)))
                await wait_until_async(lambda: engine.stats().running == 1, 30, every_s=0.01, what="the row to start")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        before = engine.stats().generated_tokens
        asyncio.run(leave_mid_generation())
        wait_until(lambda: _idle(engine), 30, what="the non-streamed row to stop")
        assert engine.stats().generated_tokens - before < LONG


def test_the_deadline_stops_an_embedded_generation(engine: EmbeddedEngine) -> None:
    with gateway(engine, request_timeout_s=1.0) as url:
        before = engine.stats().generated_tokens
        late = httpx.post(url + "/v1/chat/completions", json=_body("hello", LONG), timeout=60)
        assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
        wait_until(lambda: _idle(engine), 30, what="the row to stop at the deadline")
        assert engine.stats().generated_tokens - before < LONG
