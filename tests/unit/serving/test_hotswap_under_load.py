"""Hot-swap under load: 50 streaming clients run for the whole test while a candidate is
loaded, put on canary, promoted, a new candidate loaded and rolled back. No response may
fail or be cut short, and each must come from the version its arm had when it started."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import openai
import pytest

from schemas import DeploymentState, Topics
from serving import (
    CanaryConfig,
    CanaryController,
    GatewayConfig,
    HotSwapConfig,
    HotSwapController,
    MemoryRoutingStore,
    create_app,
)
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from serving.routing import route
from streams import EmbeddedBus
from tests._serving import manifest_for, serve_app
from tests._wait import wait_until_async
from tests.kits.scripted_engine import ScriptedEngine, scripted_reply

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.timeout(120)]
CLIENTS = 50
TOKENS = 20


class RecordingStore(MemoryRoutingStore):
    """Keeps every state with the time it took effect, to check responses against."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[float, DeploymentState]] = []
        self._hist_lock = threading.Lock()

    def put(self, state: DeploymentState, token: int = 0, experiment: str | None = None) -> None:
        with self._hist_lock:
            super().put(state, token, experiment)
            self.history.append((time.monotonic(), state))

    def states_between(self, t0: float, t1: float) -> list[DeploymentState]:
        out = []
        for i, (t, s) in enumerate(self.history):
            until = self.history[i + 1][0] if i + 1 < len(self.history) else float("inf")
            if t <= t1 and until >= t0:
                out.append(s)
        return out


@dataclass
class Result:
    user: str
    started: float
    first_byte: float
    model: str
    fingerprint: str
    text: str
    finish: str | None


async def _client_loop(
    client: openai.AsyncOpenAI, user: str, stop: asyncio.Event, results: list[Result], failures: list[str]
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            stream = await client.chat.completions.create(
                model="policy", messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS, stream=True, user=user
            )
            parts, first, model, fp, finish = [], 0.0, "", "", None
            async for chunk in stream:
                if not first:
                    first = time.monotonic()
                    model, fp = chunk.model, chunk.system_fingerprint or ""
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
            results.append(Result(user, started, first, model, fp, "".join(parts), finish))
        except Exception as exc:  # any failure is what this test exists to catch
            failures.append(f"{user}: {type(exc).__name__}: {exc}")


async def _settle(hs: HotSwapController, until: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Step the hot-swap controller until ``until()`` holds."""

    async def step() -> bool:
        if until():
            return True
        await hs.poll_once()
        return False

    await wait_until_async(step, timeout_s, what="the hot-swap to settle")


def test_swaps_under_load_drop_nothing(topics: Topics) -> None:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    engine = ScriptedEngine(token_delay_s=0.004)
    slots = ModelSlots(engine)
    store = RecordingStore()
    canary = CanaryController(CanaryConfig(steps_bp=(5000, 10_000)), "policy", store, bus, topics)
    hs = HotSwapController(HotSwapConfig(unload_grace_s=0.2), "policy", slots, canary, bus, topics)
    producer = bus.producer()

    def publish(version: str, parent: str | None) -> None:
        producer.produce(
            topics.models_checkpoints, manifest_for(None, version, parent=parent).to_json_bytes(), key=version
        )

    gateway = Gateway(GatewayConfig(), store, slots, None)
    results: list[Result] = []
    failures: list[str] = []

    def since(t: float, model: str | None = None) -> int:
        """Responses that started at ``t`` or later (from ``model``, if given)."""
        return sum(1 for r in results if r.started >= t and (model is None or r.model == model))

    async def traffic(what: str, t: float, *served: str) -> None:
        """Wait until every client has had about two replies since ``t``, so that requests
        were in flight across the change at ``t``, and ``served`` models answered some."""
        await wait_until_async(
            lambda: failures or (since(t) >= 2 * CLIENTS and all(since(t, m) for m in served)),
            60,
            what=f"traffic {what}",
        )
        assert not failures, failures[:5]

    async def scenario(url: str) -> None:
        publish("v1", None)
        assert [e.kind for e in await hs.poll_once()] == ["bootstrapped"]
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=30)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_client_loop(client, f"user-{i}", stop, results, failures)) for i in range(CLIENTS)
        ]
        await traffic("on v1 alone", time.monotonic(), "policy@v1")
        publish("v2", "v1")
        t = time.monotonic()
        assert [e.kind for e in await hs.poll_once()] == ["loaded"]
        assert store.get("policy").candidate_version == "v2"
        await traffic("on the v2 canary", t, "policy@v1", "policy@v2")
        canary.operator_action("promote", "test", "promote under load")
        await _settle(hs, lambda: "v1" in engine.unload_calls)
        await traffic("after promoting v2", time.monotonic(), "policy@v2")
        publish("v3", "v2")
        await _settle(hs, lambda: store.get("policy").candidate_version == "v3")
        await traffic("on the v3 canary", time.monotonic(), "policy@v2", "policy@v3")
        canary.operator_action("rollback", "test", "roll back under load")
        await _settle(hs, lambda: "v3" in engine.unload_calls)
        await traffic("after rolling v3 back", time.monotonic(), "policy@v2")
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()

    with serve_app(create_app(gateway)) as url:
        asyncio.run(scenario(url))

    assert failures == []
    served = {r.model for r in results}
    assert served == {"policy@v1", "policy@v2", "policy@v3"}
    for r in results:
        version = r.model.split("@", 1)[1]
        arm = r.fingerprint.split(":", 1)[0]
        assert r.fingerprint == f"{arm}:{version}"
        assert r.text == scripted_reply(version, TOKENS) and r.finish == "length", f"truncated reply from {version}"
        allowed = {
            (route(s, r.user).arm, route(s, r.user).version) for s in store.states_between(r.started, r.first_byte)
        }
        assert (arm, version) in allowed, f"{r.user} got {arm}:{version}, routing allowed {allowed}"
    assert engine.unload_calls == ["v1", "v3"] and engine.versions() == ["v2"]
    assert not engine.cancelled


def test_a_checkpoint_that_fails_its_health_check_never_gets_traffic(topics: Topics) -> None:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    engine = ScriptedEngine()
    engine.broken.add("v2")
    engine.fail_load.add("v3")
    slots = ModelSlots(engine)
    store = MemoryRoutingStore()
    canary = CanaryController(CanaryConfig(), "policy", store, bus, topics)
    hs = HotSwapController(HotSwapConfig(unload_grace_s=0.0), "policy", slots, canary, None, topics)

    async def scenario() -> None:
        hs.offer(manifest_for(None, "v1", age_s=30))
        assert [e.kind for e in await hs.poll_once()] == ["bootstrapped"]
        hs.offer(manifest_for(None, "v2", parent="v1", age_s=20))
        events = await hs.poll_once()
        assert [e.kind for e in events] == ["rejected"] and "empty reply" in events[0].detail
        hs.offer(manifest_for(None, "v3", parent="v1", age_s=10))
        assert [e.kind for e in await hs.poll_once()] == ["rejected"]
        hs.offer(manifest_for(None, "v4", parent="v1", passed=False))  # failed the offline gate: ignored
        assert await hs.poll_once() == []

    asyncio.run(scenario())
    s = store.get("policy")
    assert s.baseline_version == "v1" and s.candidate_version is None and s.share_bp == 0
    rejects = [d for d in canary.decisions if d.action == "reject"]
    assert [d.candidate_version for d in rejects] == ["v2", "v3"]
    assert slots.ready() == ["v1"] and engine.versions() == ["v1"]
