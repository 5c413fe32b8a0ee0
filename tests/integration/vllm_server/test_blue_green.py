"""Full weights go blue/green on real vLLM, and a replica that starts late is reconciled.

A full-weight generation (here: the base's weights published as one) cannot be
hot-loaded into the running server, so the engine's launcher starts a vLLM process for it
while clients stream on the baseline; the canary then routes to it, and a rollback drains
it, stops the process and closes its port, with no request failed.

The same process is also the late replica of the reconcile check: a second deployment
lists the shared server and that port as its two replicas of the base. Its adapters land on
the shared server only (the port is down); once the process is up, with no runtime
adapter on it, the hot-swap controller's reconcile gives it the baseline and the candidate.
One vLLM start thus covers both (restarting the shared server cost as much again).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import httpx
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
from serving.engines import ModelSource, complete
from serving.engines.vllm_config import VllmEngineConfig, VllmLauncherConfig
from serving.engines.vllm_launcher import port_open
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from streams import EmbeddedBus
from tests._serving import manifest_for, serve_app_here
from tests._vllm import LocalVllm, greedy, listed, lora_manifest, run_dir, stop_server
from tests._wait import wait_until_async

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
CLIENTS = 2  # constant load, light enough that the launch (a vLLM start) is not starved on 2 cores
GREEN_PORT = int(os.environ.get("FLYWHEEL_TEST_VLLM_GREEN_PORT", "18100"))
GREEN_URL = f"http://127.0.0.1:{GREEN_PORT}"


def _listed(url: str) -> set[str]:
    """What a server lists; nothing while it does not answer."""
    try:
        return listed(url)
    except httpx.HTTPError:
        return set()


async def _client_loop(
    client: openai.AsyncOpenAI, user: str, stop: asyncio.Event, served: list[str], failures: list[str]
) -> None:
    n = 0
    while not stop.is_set():
        n += 1  # a new user per request: both arms of the 50 % canary get traffic from two clients
        try:
            stream = await client.chat.completions.create(
                model="policy",
                messages=[{"role": "user", "content": f"Hello, I am {user}."}],
                max_tokens=16,
                stream=True,
                user=f"{user}-{n}",
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


class _Deployment:
    """An engine with its slots, routing, canary and hot-swap controller on a bus of its own."""

    def __init__(self, config: VllmEngineConfig, topics: Topics, hotswap: HotSwapConfig) -> None:
        self.bus = EmbeddedBus()
        self.bus.create_topics(topics.specs())
        self.engine = VllmEngine(config)
        self.slots = ModelSlots(self.engine)
        self.store = MemoryRoutingStore()
        self.canary = CanaryController(CanaryConfig(steps_bp=(5000, 10_000)), "policy", self.store, self.bus, topics)
        self.hs = HotSwapController(hotswap, "policy", self.slots, self.canary, self.bus, topics)


def test_a_full_weight_generation_runs_green_under_load_and_its_process_is_a_late_replica(
    vllm: LocalVllm, adapters: dict[str, Path], base_dir: Path, topics: Topics, tmp_path: Path
) -> None:
    assert not port_open(GREEN_PORT), f"port {GREEN_PORT} is taken; set FLYWHEEL_TEST_VLLM_GREEN_PORT"
    full_dir = shutil.copytree(base_dir, tmp_path / "f1")  # the base's weights, published as a full generation
    cores = sorted(os.sched_getaffinity(0))
    # Pinned to the last core: on "auto" it would share the base engine's first core.
    cpu_bind = str(cores[-1]) if len(cores) > 1 else None
    launcher = VllmLauncherConfig(enabled=True, first_port=GREEN_PORT, last_port=GREEN_PORT, cpu_bind=cpu_bind)
    blue = _Deployment(
        VllmEngineConfig(urls=(vllm.url,), tokenizer_dir=vllm.model_dir, launcher=launcher),
        topics,
        HotSwapConfig(unload_grace_s=0.5),
    )
    late = _Deployment(
        VllmEngineConfig(urls=(vllm.url, GREEN_URL), tokenizer_dir=vllm.model_dir),
        topics,
        HotSwapConfig(reconcile_interval_s=0.5),
    )
    gateway = Gateway(GatewayConfig(), blue.store, blue.slots, None)
    served: list[str] = []
    failures: list[str] = []
    rejected: list[str] = []

    async def settle(what: str, until, timeout_s: float = 120) -> None:  # type: ignore[no-untyped-def]
        async def step() -> bool:
            if failures or rejected or until():
                return True
            rejected.extend(f"{e.version}: {e.detail}" for e in await blue.hs.poll_once() if e.kind == "rejected")
            return False

        await wait_until_async(step, timeout_s, every_s=0.2, what=what)
        assert not failures, failures[:5]
        assert not rejected, rejected

    async def traffic(what: str, *models: str) -> None:
        """Some replies from each of ``models`` since now: requests were in flight across the change."""
        start = len(served)
        await wait_until_async(
            lambda: failures or (all(m in served[start:] for m in models) and len(served) - start >= CLIENTS),
            120,
            what=f"traffic {what}",
        )
        assert not failures, failures[:5]

    async def adapters_on_the_shared_server_only() -> None:
        late.hs.offer(lora_manifest(adapters["a1"], "a1", parent=None))
        assert [e.kind for e in await late.hs.poll_once()] == ["bootstrapped"]
        late.hs.offer(lora_manifest(adapters["a2"], "a2", parent="a1"))
        assert "loaded" in [e.kind for e in await late.hs.poll_once()]
        assert {"policy@a1", "policy@a2"} <= _listed(vllm.url)

    async def the_late_replica_is_reconciled() -> None:
        assert not {"policy@a1", "policy@a2"} & _listed(GREEN_URL), "a fresh replica has no runtime adapter"
        reconciled: list[str] = []

        async def step() -> bool:
            reconciled.extend(e.version for e in await late.hs.poll_once() if e.kind == "reconciled")
            return {"policy@a1", "policy@a2"} <= _listed(GREEN_URL)

        await wait_until_async(step, 60, every_s=0.5, what="reconcile to apply both adapters on the late replica")
        assert sorted(reconciled) == ["a1", "a2"]
        for i, version in enumerate(("a1", "a1", "a2", "a2")):  # round robin: each version on both replicas
            reply = await complete(late.engine, version, greedy(i))
            assert reply.completion_tokens > 0
        for version in ("a1", "a2"):
            await late.engine.unload(version)
        await late.engine.close()

    async def scenario() -> None:
        await adapters_on_the_shared_server_only()
        async with serve_app_here(create_app(gateway)) as url:
            await run(url)

    async def run(url: str) -> None:
        await blue.engine.load(ModelSource("base", None, kind="full"))  # served by the shared server
        blue.slots.mark_ready("base")
        blue.canary.bootstrap("base")
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_client_loop(client, f"user-{i}", stop, served, failures)) for i in range(CLIENTS)]
        await traffic("on the base", "policy@base")

        manifest = manifest_for(full_dir, "f1", parent="base")
        assert manifest.kind == "full" and manifest.lora_base is None
        blue.bus.producer().produce(topics.models_checkpoints, manifest.to_json_bytes(), key="f1")
        start = len(served)
        # The launch (a vLLM start) happens inside this poll; clients stream on the base meanwhile.
        await settle(
            "f1 on canary", lambda: getattr(blue.store.get("policy"), "candidate_version", None) == "f1", timeout_s=600
        )
        assert len(served) > start, "the base kept serving while f1's process started"
        assert "policy@f1" in _listed(GREEN_URL) and "policy@f1" not in _listed(vllm.url)
        pid = int((run_dir(GREEN_PORT) / "vllm.pid").read_text())
        await traffic("on the f1 canary", "policy@base", "policy@f1")

        await the_late_replica_is_reconciled()
        await traffic("after the late replica's adapters", "policy@base", "policy@f1")

        blue.canary.operator_action("rollback", "test", "roll back under load")
        await settle("f1 unloaded", lambda: "f1" not in blue.engine.versions())
        assert not port_open(GREEN_PORT), "the rolled-back generation's port is still open"
        assert not Path(f"/proc/{pid}").exists(), "the rolled-back generation's vLLM process still runs"
        assert "policy@base" in _listed(vllm.url), "the base server is not the launcher's to stop"
        await traffic("after rolling f1 back", "policy@base")
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()
        await blue.engine.close()

    try:
        asyncio.run(scenario())
    finally:
        if port_open(GREEN_PORT):  # a failed run must not leave the green process holding a core
            stop_server(GREEN_PORT)

    assert failures == []
    assert {"policy@base", "policy@f1"} <= set(served)
    print(f"{len(served)} streamed replies across a blue/green launch and a rollback, 0 failed")
