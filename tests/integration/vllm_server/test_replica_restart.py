"""A vLLM replica that restarts loses its runtime adapters; the hot-swap controller's
periodic reconcile gives it back the baseline and the candidate before traffic needs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from schemas import Topics
from serving import CanaryConfig, CanaryController, HotSwapConfig, HotSwapController, MemoryRoutingStore, VllmEngine
from serving.engines import complete
from serving.engines.vllm_config import VllmEngineConfig
from serving.hotswap import ModelSlots
from streams import EmbeddedBus
from tests._vllm import LocalVllm, greedy, listed, lora_manifest
from tests._wait import wait_until_async

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


def _listed(url: str) -> set[str]:
    """What the server lists; nothing while it does not answer (it is restarting)."""
    try:
        return listed(url)
    except httpx.HTTPError:
        return set()


def test_a_restarted_replica_gets_baseline_and_candidate_back(
    vllm: LocalVllm, adapters: dict[str, Path], topics: Topics
) -> None:
    engine = VllmEngine(VllmEngineConfig(urls=(vllm.url,), tokenizer_dir=vllm.model_dir))
    slots = ModelSlots(engine)
    store = MemoryRoutingStore()
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    canary = CanaryController(CanaryConfig(), "policy", store, bus, topics)
    hs = HotSwapController(HotSwapConfig(reconcile_interval_s=0.5), "policy", slots, canary, None, topics)

    async def run() -> None:
        hs.offer(lora_manifest(adapters["a1"], "a1", parent=None))
        assert [e.kind for e in await hs.poll_once()] == ["bootstrapped"]
        hs.offer(lora_manifest(adapters["a2"], "a2", parent="a1"))
        assert "loaded" in [e.kind for e in await hs.poll_once()]
        assert {"policy@a1", "policy@a2"} <= _listed(vllm.url)

        await asyncio.to_thread(vllm.restart)
        assert not {"policy@a1", "policy@a2"} & _listed(vllm.url), "a restart keeps no runtime adapter"

        reconciled: list[str] = []

        async def step() -> bool:
            reconciled.extend(e.version for e in await hs.poll_once() if e.kind == "reconciled")
            return {"policy@a1", "policy@a2"} <= _listed(vllm.url)

        await wait_until_async(step, 60, every_s=0.5, what="reconcile to re-apply both adapters")
        assert sorted(reconciled) == ["a1", "a2"]
        for i, version in enumerate(("a1", "a2")):
            reply = await complete(engine, version, greedy(i))
            assert reply.completion_tokens > 0
        for version in ("a1", "a2"):
            await engine.unload(version)
        await engine.close()

    asyncio.run(run())
