"""Hot-swap on a real vLLM server: LoRA generations are brought in, put on canary,
promoted and rolled back while clients stream without pause. No request may fail or be
cut short; a version that stops being routed is unloaded from vLLM."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest

from schemas import Topics
from serving import (
    CanaryConfig,
    CanaryController,
    GatewayConfig,
    HotSwapConfig,
    HotSwapController,
    MemoryRoutingStore,
    VllmEngine,
    create_app,
)
from serving.engines import ModelSource
from serving.engines.vllm_config import VllmEngineConfig
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from streams import EmbeddedBus
from tests._serving import serve_app_here
from tests._vllm import LocalVllm, listed, lora_manifest
from tests._wait import wait_until_async

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
CLIENTS = 16


async def _client_loop(
    client: openai.AsyncOpenAI, user: str, stop: asyncio.Event, served: list[str], failures: list[str]
) -> None:
    while not stop.is_set():
        try:
            stream = await client.chat.completions.create(
                model="policy",
                messages=[{"role": "user", "content": f"Hello, I am {user}."}],
                max_tokens=16,
                stream=True,
                user=user,
            )
            model, finish = "", None
            async for chunk in stream:
                model = model or chunk.model
                if chunk.choices:
                    finish = chunk.choices[0].finish_reason or finish
            if finish not in ("stop", "length"):
                failures.append(f"{user}: stream from {model} ended without a finish reason")
            served.append(model)
        except Exception as exc:  # any failure is what this test exists to catch
            failures.append(f"{user}: {type(exc).__name__}: {exc}")


def test_swaps_and_a_rollback_under_load_fail_nothing_and_unload(
    vllm: LocalVllm, adapters: dict[str, Path], topics: Topics
) -> None:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    engine = VllmEngine(VllmEngineConfig(urls=(vllm.url,), tokenizer_dir=vllm.model_dir))
    slots = ModelSlots(engine)
    store = MemoryRoutingStore()
    canary = CanaryController(CanaryConfig(steps_bp=(5000, 10_000)), "policy", store, bus, topics)
    hs = HotSwapController(HotSwapConfig(unload_grace_s=0.5), "policy", slots, canary, bus, topics)
    producer = bus.producer()
    gateway = Gateway(GatewayConfig(), store, slots, None)
    served: list[str] = []
    failures: list[str] = []

    def publish(version: str, parent: str) -> None:
        manifest = lora_manifest(adapters[version], version, parent=parent)
        producer.produce(topics.models_checkpoints, manifest.to_json_bytes(), key=version)

    async def settle(what: str, until) -> None:  # type: ignore[no-untyped-def]
        async def step() -> bool:
            if failures or until():
                return True
            await hs.poll_once()
            return False

        await wait_until_async(step, 120, every_s=0.2, what=what)
        assert not failures, failures[:5]

    async def traffic(what: str, *models: str) -> None:
        """Some replies from each of ``models`` since now: requests were in flight across the change."""
        start = len(served)
        await wait_until_async(
            lambda: failures or (all(m in served[start:] for m in models) and len(served) - start >= CLIENTS),
            120,
            what=f"traffic {what}",
        )
        assert not failures, failures[:5]

    async def scenario() -> None:
        async with serve_app_here(create_app(gateway)) as url:
            await run(url)

    async def run(url: str) -> None:
        await engine.load(ModelSource("base", None, kind="full"))
        slots.mark_ready("base")
        canary.bootstrap("base")
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client_loop(client, f"user-{i}", stop, served, failures)) for i in range(CLIENTS)]
        await traffic("on the base", "policy@base")
        for version, parent in (("a1", "base"), ("a2", "a1")):
            publish(version, parent)
            await settle(f"{version} on canary", lambda v=version: store.get("policy").candidate_version == v)
            await traffic(f"on the {version} canary", f"policy@{parent}", f"policy@{version}")
            canary.operator_action("promote", "test", "promote under load")
            await settle(f"{parent} unloaded", lambda p=parent: p not in engine.versions())
            await traffic(f"after promoting {version}", f"policy@{version}")
        assert "policy@a1" not in listed(vllm.url), "a retired generation stays loaded in vLLM"
        publish("a3", "a2")
        await settle("a3 on canary", lambda: store.get("policy").candidate_version == "a3")
        await traffic("on the a3 canary", "policy@a2", "policy@a3")
        t = time.monotonic()
        canary.operator_action("rollback", "test", "roll back under load")
        await settle("a3 unloaded", lambda: "a3" not in engine.versions())
        assert time.monotonic() - t < 60
        await traffic("after rolling a3 back", "policy@a2")
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()
        names = listed(vllm.url)
        assert "policy@a3" not in names and "policy@a2" in names
        await engine.unload("a2")
        await engine.close()

    asyncio.run(scenario())

    assert failures == []
    assert {"policy@base", "policy@a1", "policy@a2", "policy@a3"} <= set(served)
    print(f"{len(served)} streamed replies across 3 swaps and a rollback, 0 failed")
