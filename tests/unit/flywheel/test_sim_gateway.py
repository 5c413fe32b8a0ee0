"""Simulated users through the real gateway (in-process, deterministic engine): the events
the gateway logs and the ones the simulator emits tell one consistent story, and the
signals processor measures exactly what the users decided."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from flywheel.sim import GatewayClient, Population, Simulator, SimulatorConfig, TurnRecord, WallClock, shared_catalogue
from schemas import (
    ENGAGEMENT_SIGNALS,
    DeploymentState,
    ModelResponseEvent,
    ResponseOutcome,
    SessionEndedEvent,
    SessionStartedEvent,
    Topics,
    UserFeedbackEvent,
    UserMessageEvent,
    engagement_signal_adapter,
    parse_chat_event,
)
from serving import EventLogger, Gateway, GatewayConfig, MemoryRoutingStore, ModelSlots, ModelSource, create_app
from streams import ChatEventProducer, EmbeddedBus, TopicPartition
from streams.processors import SignalsConfig, SignalsProcessor, SourcePartition
from tests._serving import serve_app
from tests.kits.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.server


@pytest.mark.timeout(120)
def test_simulated_users_through_the_gateway_tell_one_consistent_story() -> None:
    bus = EmbeddedBus()
    topics = Topics("simgw")
    bus.create_topics(topics.specs())
    slots = ModelSlots(ScriptedEngine())
    asyncio.run(slots.load(ModelSource("v1", None)))
    store = MemoryRoutingStore()
    store.put(
        DeploymentState(model="policy", baseline_version="v1", experiment_salt="salt", updated_ts=datetime.now(UTC))
    )
    gateway = Gateway(GatewayConfig(models=("policy",)), store, slots, EventLogger(bus.producer(), topics.chat_events))
    serving = contextlib.ExitStack()
    url = serving.enter_context(serve_app(create_app(gateway)))
    catalogue = shared_catalogue()
    records: list[TurnRecord] = []
    client = GatewayClient(url, max_tokens=12)
    sim = Simulator(
        SimulatorConfig(users=30, seed=3, concurrency=8),
        Population.generate(30, 3, catalogue),
        client,
        ChatEventProducer(bus.producer(), topics.chat_events),
        WallClock(86_400 / 2),
        on_turn=records.append,
    )

    async def go() -> None:
        await sim.run(days=2)
        await client.aclose()

    asyncio.run(go())
    serving.close()  # drains the gateway's event buffer

    consumer = bus.consumer()
    n = bus.partitions(topics.chat_events)
    consumer.assign({TopicPartition(topics.chat_events, p): 0 for p in range(n)})
    raw = consumer.consume(1_000_000, 0.1)
    by_conv: dict[str, list] = defaultdict(list)
    for r in raw:
        e = parse_chat_event(r.value)
        by_conv[e.conversation_id].append(e)
    replies_by_conv: dict[str, list[TurnRecord]] = defaultdict(list)
    for rec in records:
        replies_by_conv[rec.conversation_id].append(rec)

    assert sim.stats.errors == 0 and set(by_conv) == set(replies_by_conv)
    for conv, events in by_conv.items():
        recs = replies_by_conv[conv]
        character = catalogue.character(recs[0].character_id)
        assert sum(isinstance(e, SessionStartedEvent) for e in events) == 1
        assert sum(isinstance(e, SessionEndedEvent) for e in events) == 1
        responses = [e for e in events if isinstance(e, ModelResponseEvent)]
        assert len(responses) == len(recs)
        assert all(e.instructions == character.instructions and e.user_id == recs[0].user_id for e in responses)
        turns = {e.turn for e in events if isinstance(e, UserMessageEvent)}
        assert turns == set(range(1, max(r.turn for r in recs) + 1))
        assert all(e.turn in turns for e in events if isinstance(e, UserFeedbackEvent))

    processor = SignalsProcessor(SignalsConfig(window_s=5, grace_s=1))
    outputs = []
    for p in range(n):
        for r in sorted((r for r in raw if r.partition == p), key=lambda r: r.offset):
            outputs += processor.process(SourcePartition("chat.events", p), r.offset, r.key, r.value)
    outputs += processor.advance_to(int(datetime.now(UTC).timestamp() * 1000) + 86_400_000)
    outcomes = [
        s
        for s in (engagement_signal_adapter.validate_json(o.value) for o in outputs if o.topic == ENGAGEMENT_SIGNALS)
        if isinstance(s, ResponseOutcome)
    ]
    assert len(outcomes) == len(records)
    measured = {(o.conversation_id, o.turn) for o in outcomes if o.continued}
    decided = {(r.conversation_id, r.turn) for r in records if r.continued}
    assert measured == decided and decided
