"""Against the real Kafka and Redis: a candidate with a higher violation rate is rolled
back automatically at the first traffic step; every gateway replica (each with its own
Redis reader) sees the same routing; decisions land on serving.deployments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from schemas import CanaryDecision, DeploymentState, Topics, deployment_record_adapter, parse_chat_event
from serving import (
    CanaryConfig,
    CanaryController,
    GatewayConfig,
    HotSwapConfig,
    HotSwapController,
    RedisRoutingStore,
    create_app,
)
from serving.gateway import EventLogger, Gateway
from serving.hotswap import ModelSlots
from serving.routing import arm_for
from streams import KafkaBus, KafkaSettings, TopicPartition
from tests._serving import manifest_for, window_aggregate
from tests._wait import wait_until, wait_until_async
from tests.kits.scripted_engine import ScriptedEngine

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.timeout(180)]


def _read_all(bus: KafkaBus, topic: str, at_least: int, timeout_s: float = 30.0) -> list[bytes]:
    """Every record of ``topic``: once ``at_least`` have come, read on to the end offsets
    of that moment, so that a later record (the last decision) is never cut off."""
    consumer = bus.consumer()
    tps = [TopicPartition(topic, p) for p in range(bus.partitions(topic))]
    consumer.assign({tp: 0 for tp in tps})
    out: list[bytes] = []

    def at_end() -> bool:
        out.extend(r.value for r in consumer.consume(1000, 0.2))
        if len(out) < at_least:
            return False
        position = consumer.position(tps)
        return all(position.get(tp, 0) >= consumer.watermarks(tp)[1] for tp in tps)

    try:
        wait_until(at_end, timeout_s, every_s=0, what=f"at least {at_least} records of {topic}, read to its end")
    finally:
        consumer.close()
    return out


def test_bad_candidate_rolls_back_at_first_step(
    kafka_settings: KafkaSettings, redis_url: str, topics: Topics, unique: Callable[[str], str]
) -> None:
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    prefix = unique("flywheel-test-routing")
    controller_store = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0.05)
    replica_stores = [RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0.05) for _ in range(2)]
    config = CanaryConfig(mde={"continue_rate": 0.05, "depth": 0.5, "breadth": 0.05}, min_samples_per_step=300)
    engine = ScriptedEngine()
    slots = ModelSlots(engine)
    canary = CanaryController(config, "policy", controller_store, bus, topics)
    hs = HotSwapController(HotSwapConfig(unload_grace_s=0.0), "policy", slots, canary, bus, topics)
    events = EventLogger(bus.producer(), topics.chat_events)
    gateways = [Gateway(GatewayConfig(), s, slots, events if i == 0 else None) for i, s in enumerate(replica_stores)]
    producer = bus.producer()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
    try:

        async def bring_in(version: str, parent: str | None, age_s: float, expect: str) -> None:
            producer.produce(
                topics.models_checkpoints,
                manifest_for(None, version, parent=parent, age_s=age_s).to_json_bytes(),
                key=version,
            )
            producer.flush(10)
            kinds: list[str] = []

            async def arrived() -> bool:
                kinds.extend(e.kind for e in await hs.poll_once(t0))
                return expect in kinds

            try:
                await wait_until_async(arrived, 30, every_s=0.1, what=f"{version} to be {expect}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; swap events seen: {kinds}") from None

        asyncio.run(bring_in("v1", None, 60, "bootstrapped"))
        asyncio.run(bring_in("v2", "v1", 30, "loaded"))
        state = controller_store.get("policy")
        assert state.candidate_version == "v2" and state.share_bp == config.steps_bp[0] and state.status == "canary"

        # Live traffic through both replicas: both route every user the same way.
        async def traffic() -> dict[str, set[str]]:
            seen: dict[str, set[str]] = {}
            events.start()
            clients = [
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=create_app(g, manage_lifecycle=False)), base_url="http://gw"
                )
                for g in gateways
            ]
            for i in range(120):
                user = f"user-{i}"
                for c in clients:
                    r = await c.post(
                        "/v1/chat/completions",
                        json={
                            "model": "policy",
                            "user": user,
                            "max_tokens": 2,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                    assert r.status_code == 200
                    seen.setdefault(user, set()).add(r.headers["x-flywheel-model-version"])
            for c in clients:
                await c.aclose()
            return seen

        seen = asyncio.run(traffic())
        assert all(len(v) == 1 for v in seen.values())
        salt = state.experiment_salt
        assert {u for u, v in seen.items() if v == {"v2"}} == {
            u for u in seen if arm_for(salt, u, state.share_bp) == "candidate"
        }
        events.stop()
        logged = [parse_chat_event(v) for v in _read_all(bus, topics.chat_events, 120 * 3)]
        responses = [e for e in logged if e.type == "model_response"]
        assert len(responses) == 120 and {(e.arm, e.model_version) for e in responses} <= {
            ("baseline", "v1"),
            ("candidate", "v2"),
        }

        # Engagement signals: the candidate violates its instructions twice as often.
        rng = np.random.default_rng(42)
        decisions = []
        for minute in range(1, 120):
            s = controller_store.get("policy")
            if s.status != "canary":
                break
            start = t0 + timedelta(minutes=minute)
            n_c = int(rng.binomial(1000, s.share_bp / 10_000))
            for agg in (
                window_aggregate(rng, "baseline", "v1", start, 1000 - n_c, partition=0),
                window_aggregate(rng, "candidate", "v2", start, n_c, partition=1, p_violation=0.2),
            ):
                producer.produce(topics.engagement_signals, agg.to_json_bytes(), key=agg.arm)
            producer.flush(10)
            canary.poll_signals(timeout_s=1.0)
            decisions.append(canary.evaluate_once(start + timedelta(seconds=90)))
        assert decisions[-1].action == "rollback" and "violation_rate" in decisions[-1].reason
        assert max(d.share_bp_after for d in decisions) <= config.steps_bp[0]
        assert all(d.action == "hold" for d in decisions[:-1])
        vr = next(r for r in decisions[-1].metrics if r.name == "violation_rate")
        assert vr.verdict == "breach" and vr.lift > 0 and vr.p_value <= 2 * config.guardrail_alpha

        # Every replica now routes everyone to the baseline.
        final = RedisRoutingStore(redis_url, prefix=prefix).get("policy")
        assert final.candidate_version is None and final.baseline_version == "v1" and final.share_bp == 0
        wait_until(
            lambda: all(
                {g.handler.resolve("policy", f"user-{i}").version for i in range(120)} == {"v1"} for g in gateways
            ),
            10,
            what="every replica to route everyone to v1 (each rereads Redis every 0.05 s)",
        )

        records = [deployment_record_adapter.validate_json(v) for v in _read_all(bus, topics.serving_deployments, 6)]
        actions = [r.action for r in records if isinstance(r, CanaryDecision)]
        assert actions[:2] == ["promote", "start"] and actions[-1] == "rollback"
        states = [r for r in records if isinstance(r, DeploymentState)]
        assert states[-1].candidate_version is None and max(s.share_bp for s in states) == config.steps_bp[0]
        asyncio.run(hs.poll_once())
        assert engine.versions() == ["v1"]  # the rolled-back candidate was unloaded
    finally:
        canary.close()
        controller_store.delete_all()
        for s in (controller_store, *replica_stores):
            s.close()
        bus.delete_topics(t.name for t in topics.specs())
        bus.close()
