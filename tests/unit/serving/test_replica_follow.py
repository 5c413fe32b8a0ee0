"""Replicas that agree (in-memory store, scripted engines, one per replica): a follower
loads what the shared state names, also when it starts mid-canary; the leader opens a
canary only once every live replica has the candidate; a replica without the candidate
refuses candidate-bucket users (503) instead of serving them the baseline, and is not
ready; request counts of every replica add up in the store."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from schemas import Topics
from serving import (
    CanaryConfig,
    CanaryController,
    GatewayConfig,
    HotSwapConfig,
    HotSwapController,
    MemoryRoutingStore,
    ModelSource,
    create_app,
)
from serving import _metrics as m
from serving.canary import RequestCountPublisher, fleet_error_counts
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from serving.leader import LeaderConfig, Leadership, MemoryLease
from serving.routing import arm_for
from streams import EmbeddedBus
from tests._serving import manifest_for, state
from tests.kits.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.timeout(30)


def _replica(name: str, store: MemoryRoutingStore, bus: EmbeddedBus, topics: Topics, leads: bool):
    # A follower's Leadership never takes its lease (never stepped): it does not lead.
    leadership = None if leads else Leadership(LeaderConfig(), MemoryLease(name), "policy")
    engine = ScriptedEngine()
    canary = CanaryController(CanaryConfig(), "policy", store, bus, topics, leadership=leadership)
    hs = HotSwapController(HotSwapConfig(unload_grace_s=0.0), "policy", ModelSlots(engine), canary, bus, topics)
    return engine, canary, hs


def test_followers_load_what_the_shared_state_names(topics: Topics) -> None:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    store = MemoryRoutingStore()
    lead_engine, lead, lead_hs = _replica("a", store, bus, topics, leads=True)
    follow_engine, follow, follow_hs = _replica("b", store, bus, topics, leads=False)
    producer = bus.producer()

    def publish(version: str, parent: str | None, age_s: float) -> None:
        manifest = manifest_for(None, version, parent=parent, age_s=age_s)
        producer.produce(topics.models_checkpoints, manifest.to_json_bytes(), key=version)

    async def run() -> list[list[str]]:
        kinds = []
        publish("v1", None, 60)
        for hs in (lead_hs, follow_hs):
            kinds.append([e.kind for e in await hs.poll_once()])
        publish("v2", "v1", 30)
        for hs in (lead_hs, lead_hs, follow_hs, lead_hs):
            kinds.append([e.kind for e in await hs.poll_once()])
        return kinds

    kinds = asyncio.run(run())
    # The leader deploys v1, the follower follows; then the leader prepares v2 and waits while
    # the follower lacks it, and opens the canary once the follower has it.
    assert kinds == [["bootstrapped"], ["followed"], ["preparing"], ["preparing"], ["followed"], ["loaded"]]
    final = store.get("policy")
    assert (final.baseline_version, final.candidate_version, final.status) == ("v1", "v2", "canary")
    assert follow_engine.versions() == lead_engine.versions() == ["v1", "v2"]
    assert follow.evaluate_once() is None  # a follower never decides
    assert store.tried("policy") == {"v1", "v2"}

    # A replica that starts mid-canary loads both arms at its first poll.
    late_engine, _late, late_hs = _replica("c", store, bus, topics, leads=False)
    assert sorted(e.version for e in asyncio.run(late_hs.poll_once()) if e.kind == "followed") == ["v1", "v2"]
    assert late_engine.versions() == ["v1", "v2"]
    for ctl in (lead, follow, _late):
        ctl.close()


def test_a_replica_without_the_candidate_refuses_its_users_and_is_not_ready() -> None:
    store = MemoryRoutingStore()
    store.put(state(baseline="v1", candidate="v2", share_bp=5000, status="canary"))
    engine = ScriptedEngine()
    slots = ModelSlots(engine)
    gateway = Gateway(GatewayConfig(), store, slots)
    users = [f"user-{i}" for i in range(40)]
    in_candidate = {u for u in users if arm_for("salt", u, 5000) == "candidate"}
    assert in_candidate and len(in_candidate) < len(users)

    async def run(loaded: list[str]) -> tuple[int, dict[str, httpx.Response]]:
        for version in loaded:
            await slots.load(ModelSource(version, None))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(gateway, manage_lifecycle=False)), base_url="http://gw"
        ) as client:
            ready = (await client.get("/ready")).status_code
            replies = {}
            for user in users:
                replies[user] = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "policy",
                        "user": user,
                        "max_tokens": 1,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                )
            return ready, replies

    ready, replies = asyncio.run(run(["v1"]))
    assert ready == 503
    for user, r in replies.items():
        if user in in_candidate:
            assert r.status_code == 503 and r.json()["error"]["code"] == "candidate_unavailable"
            assert r.headers["retry-after"] == "1"
        else:
            assert r.status_code == 200 and r.headers["x-flywheel-arm"] == "baseline"
    ready, replies = asyncio.run(run(["v2"]))
    assert ready == 200
    assert {u for u, r in replies.items() if r.headers["x-flywheel-arm"] == "candidate"} == in_candidate
    assert all(r.status_code == 200 for r in replies.values())


def test_every_replicas_request_counts_add_up_in_the_store() -> None:
    store = MemoryRoutingStore()
    model = "counted-model"
    publisher = RequestCountPublisher(store, model)
    m.REQUESTS.labels(model, "candidate", "v2", "ok").inc(3)
    m.REQUESTS.labels(model, "candidate", "v2", "error").inc(1)
    publisher.flush()
    store.add_request_counts(model, {("candidate", "v2", "ok"): 5})  # another replica's flush
    m.REQUESTS.labels(model, "candidate", "v2", "ok").inc(2)
    publisher.flush()  # only what is new since the last flush
    assert store.request_counts(model) == {("candidate", "v2", "ok"): 10, ("candidate", "v2", "error"): 1}
    assert fleet_error_counts(store, model)("candidate", "v2") == (11, 1)
