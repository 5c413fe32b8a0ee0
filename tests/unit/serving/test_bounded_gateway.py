"""Bounded requests through the running gateway (uvicorn on loopback) with the scripted
engine: prompts over the context, bodies over the limit, a full queue, the deadline,
clients that leave, API keys; and the vLLM engine's context against the compat server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from serving import GatewayConfig, MemoryRoutingStore, create_app
from serving.engines import ContextWindow, ModelSource, VllmEngine, VllmEngineConfig
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from tests._serving import serve_app, state
from tests._wait import wait_until, wait_until_async
from tests.kits.scripted_engine import ScriptedEngine, scripted_reply
from tests.kits.vllm_compat_server import VllmCompatServer

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


@contextmanager
def gateway(engine: ScriptedEngine, **config: Any) -> Iterator[tuple[str, Gateway]]:
    asyncio.run(engine.load(ModelSource("v1", None)))
    slots = ModelSlots(engine)
    slots.mark_ready("v1")
    store = MemoryRoutingStore()
    store.put(state(baseline="v1"))
    gw = Gateway(GatewayConfig(retry_backoff_s=0.0, **config), store, slots)
    with serve_app(create_app(gw)) as url:
        yield url, gw


def _body(text: str, max_tokens: int = 8, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "policy",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def _error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]


def _refused() -> float:
    labels = {"status": "400", "code": "context_length_exceeded"}
    return REGISTRY.get_sample_value("flywheel_serving_http_errors_total", labels) or 0.0


def test_a_prompt_over_the_context_gets_400_before_the_engine_while_others_are_served() -> None:
    engine = ScriptedEngine(token_delay_s=0.005, context_tokens=384, max_token_chars=16)
    # The counter is process-wide: other tests in the same process count refusals too.
    refused_before = _refused()
    with gateway(engine) as (url, _):

        async def run() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                ordinary = [
                    asyncio.ensure_future(client.post("/v1/chat/completions", json=_body(f"hi {i}", 200)))
                    for i in range(8)
                ]
                await wait_until_async(lambda: engine.running == 8, 20, every_s=0.01, what="8 requests generating")
                huge = await client.post("/v1/chat/completions", json=_body("word " * 80_000))  # 400,000 chars
                counted = await client.post("/v1/chat/completions", json=_body("ab " * 400))  # 400 tokens
                clamped = await client.post("/v1/chat/completions", json=_body("ab " * 380, max_tokens=50))
                done = await asyncio.gather(*ordinary)
            assert huge.status_code == 400 and _error(huge)["code"] == "context_length_exceeded"
            assert _error(huge)["type"] == "invalid_request_error" and _error(huge)["param"] == "messages"
            assert "maximum context length is 384 tokens" in _error(huge)["message"]
            assert counted.status_code == 400 and "have 400 tokens" in _error(counted)["message"]
            reply = clamped.json()
            assert reply["choices"][0]["finish_reason"] == "length" and reply["usage"]["completion_tokens"] == 4
            assert [r.status_code for r in done] == [200] * 8
            assert {r.json()["choices"][0]["message"]["content"] for r in done} == {scripted_reply("v1", 200)}

        asyncio.run(run())
        assert len(engine.started) == 8 + 1  # the two refused prompts never reached the engine
        assert _refused() == refused_before + 2
        assert "flywheel_serving_http_errors_total{" in httpx.get(url + "/metrics").text


def test_a_body_over_the_limit_gets_413_before_it_is_parsed() -> None:
    engine = ScriptedEngine()
    with gateway(engine, max_body_bytes=4096) as (url, _):
        big = httpx.post(url + "/v1/chat/completions", json=_body("x" * 10_000))
        assert big.status_code == 413
        assert _error(big)["code"] == "request_too_large" and _error(big)["type"] == "invalid_request_error"
        assert "4096 bytes" in _error(big)["message"]
        chunks = [json.dumps(_body("x" * 10_000)).encode()[i : i + 1000] for i in range(0, 10_100, 1000)]
        chunked = httpx.post(
            url + "/v1/chat/completions", content=iter(chunks), headers={"content-type": "application/json"}
        )  # no Content-Length: read only up to the limit
        assert chunked.status_code == 413 and _error(chunked)["code"] == "request_too_large"
        fits = httpx.post(url + "/v1/chat/completions", json=_body("x" * 3000))
        assert fits.status_code == 200
        assert engine.started == [fits.json()["id"]]


def test_a_full_queue_gets_429_with_retry_after_and_the_openai_error() -> None:
    engine = ScriptedEngine(token_delay_s=0.01)
    with gateway(engine, max_running=1, max_queued=1, retry_after_s=2.0) as (url, gw):
        admission = gw.handler.admission

        async def run() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                running = asyncio.ensure_future(client.post("/v1/chat/completions", json=_body("a", 2000)))
                await wait_until_async(lambda: engine.running == 1, 20, every_s=0.01, what="the first to run")
                queued = asyncio.ensure_future(client.post("/v1/chat/completions", json=_body("b", 3)))
                await wait_until_async(lambda: admission.queued == 1, 20, every_s=0.01, what="the second to queue")
                refused = await client.post("/v1/chat/completions", json=_body("c", 3))
                assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
                assert _error(refused)["code"] == "overloaded" and _error(refused)["type"] == "rate_limit_error"
                running.cancel()  # its client leaves: the queued request gets the slot
                await asyncio.gather(running, return_exceptions=True)
                served = await queued
                assert served.status_code == 200
                assert served.json()["choices"][0]["message"]["content"] == scripted_reply("v1", 3)

        asyncio.run(run())
        wait_until(lambda: admission.running == 0 and engine.running == 0, 20, what="every slot to be free")


def test_the_deadline_stops_the_engine_and_tells_the_client() -> None:
    engine = ScriptedEngine(token_delay_s=0.01)
    with gateway(engine, request_timeout_s=0.5) as (url, gw):
        late = httpx.post(url + "/v1/chat/completions", json=_body("slow", 2000), timeout=30)
        assert late.status_code == 504
        assert _error(late)["code"] == "deadline_exceeded" and "0.5 s" in _error(late)["message"]
        wait_until(lambda: len(engine.cancelled) == 1, 20, what="the engine to stop the first request")
        with httpx.stream("POST", url + "/v1/chat/completions", json=_body("slow", 2000, stream=True)) as stream:
            assert stream.status_code == 200
            events = [line.removeprefix("data: ") for line in stream.iter_lines() if line.startswith("data: ")]
        assert json.loads(events[1])["choices"][0]["delta"]["content"]  # tokens came before the deadline
        assert json.loads(events[-1])["error"]["code"] == "deadline_exceeded" and "[DONE]" not in events
        wait_until(lambda: len(engine.cancelled) == 2, 20, what="the engine to stop the streamed request")
        assert engine.running == 0 and gw.handler.admission.running == 0
        assert not engine.completed  # both stopped long before their 2,000 tokens


def test_a_client_that_leaves_frees_its_engine_slot_streaming_or_not_or_queued() -> None:
    engine = ScriptedEngine(token_delay_s=0.01)
    with gateway(engine, max_running=1, max_queued=1) as (url, gw):
        admission = gw.handler.admission

        def slot_free() -> bool:
            return admission.running == 0 and admission.queued == 0 and engine.running == 0

        with httpx.stream("POST", url + "/v1/chat/completions", json=_body("a", 2000, stream=True)) as stream:
            lines = stream.iter_lines()
            assert [next(lines) for _ in range(4)]  # some tokens came
        wait_until(slot_free, 20, what="the streamed request's slot to be freed")
        assert len(engine.cancelled) == 1

        async def run() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                waiting = asyncio.ensure_future(client.post("/v1/chat/completions", json=_body("b", 2000)))
                await wait_until_async(lambda: engine.running == 1, 20, every_s=0.01, what="b to generate")
                queued = asyncio.ensure_future(client.post("/v1/chat/completions", json=_body("c", 2000)))
                await wait_until_async(lambda: admission.queued == 1, 20, every_s=0.01, what="c to queue")
                queued.cancel()  # left while queued: never reaches the engine
                await asyncio.gather(queued, return_exceptions=True)
                await wait_until_async(lambda: admission.queued == 0, 20, what="c to leave the queue")
                waiting.cancel()  # left during a non-streaming generation
                await asyncio.gather(waiting, return_exceptions=True)

        asyncio.run(run())
        wait_until(slot_free, 20, what="the non-streaming request's slot to be freed")
        assert len(engine.cancelled) == 2 and len(engine.started) == 2  # c never started
        after = httpx.post(url + "/v1/chat/completions", json=_body("d", 3))
        assert after.status_code == 200  # the one slot is free again


def test_api_keys_are_required_on_v1_when_configured() -> None:
    engine = ScriptedEngine()
    keys = (SecretStr("key-one"), SecretStr("key-two"))
    with gateway(engine, api_keys=keys, max_body_bytes=4096) as (url, _):
        missing = httpx.post(url + "/v1/chat/completions", json=_body("hi"))
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert _error(missing)["code"] == "invalid_api_key"
        wrong = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401
        big = httpx.post(url + "/v1/chat/completions", json=_body("x" * 10_000))
        assert big.status_code == 401  # no key, no reading the body
        client = openai.OpenAI(base_url=url + "/v1", api_key="key-two", max_retries=0)
        reply = client.chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert reply.choices[0].message.content == scripted_reply("v1", 2)
        assert [m.id for m in client.models.list()] == ["policy"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
        assert httpx.get(url + "/health").status_code == 200  # only /v1 needs a key
        assert httpx.get(url + "/metrics").status_code == 200
        assert len(engine.started) == 1


def test_the_vllm_engine_knows_its_context_and_vllms_400_is_not_retried() -> None:
    with VllmCompatServer(served=("policy@base",), max_model_len=64) as server:
        engine = VllmEngine(VllmEngineConfig(urls=(server.url,), max_token_chars=8))

        async def run() -> None:
            await engine.load(ModelSource("base", None))
            assert engine.context_window("base") == ContextWindow(64, 8)
            assert engine.count_prompt_tokens("base", ()) is None
            slots = ModelSlots(engine)
            slots.mark_ready("base")
            store = MemoryRoutingStore()
            store.put(state(baseline="base"))
            app = create_app(Gateway(GatewayConfig(retry_backoff_s=0.0), store, slots))
            seen = len(server.state.requests)  # the warm-up
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
                huge = await client.post("/v1/chat/completions", json=_body("x" * 1000))  # > 64 × 8 chars
                assert huge.status_code == 400 and _error(huge)["code"] == "context_length_exceeded"
                assert len(server.state.requests) == seen  # never reached vLLM
                over = await client.post("/v1/chat/completions", json=_body("w " * 60, max_tokens=10))
                assert over.status_code == 400 and _error(over)["code"] == "invalid_request"
                assert "maximum context length is 64" in _error(over)["message"]
                assert len(server.state.requests) == seen + 1  # vLLM's refusal was not retried
                fits = await client.post("/v1/chat/completions", json=_body("w " * 20, max_tokens=10))
                assert fits.status_code == 200
            await engine.close()

        asyncio.run(run())
