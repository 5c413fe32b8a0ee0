"""The gateway through the official openai client: streaming, non-streaming, errors,
disconnect mid-stream (upstream cancelled), retry before the first byte, chat events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import openai
import pytest

from schemas import Topics, parse_chat_event
from serving import GatewayConfig, MemoryRoutingStore, create_app
from serving.gateway import EventLogger, Gateway
from serving.hotswap import ModelSlots
from serving.routing import arm_for
from streams import EmbeddedBus, TopicPartition
from tests._serving import serve_app, state
from tests._wait import wait_until
from tests.kits.scripted_engine import ScriptedEngine, scripted_reply

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]


class Env:
    def __init__(
        self,
        engine: ScriptedEngine,
        store: MemoryRoutingStore,
        bus: EmbeddedBus,
        topics: Topics,
        url: str,
        events: EventLogger,
    ) -> None:
        self.engine, self.store, self.bus, self.topics, self.url, self.events = engine, store, bus, topics, url, events

    def client(self, **kw: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kw)  # type: ignore[arg-type]

    def chat_events(self) -> list:
        self.events.flush()
        consumer = self.bus.consumer()
        topic = self.topics.chat_events
        consumer.assign({TopicPartition(topic, p): 0 for p in range(self.bus.partitions(topic))})
        out = []
        while batch := consumer.consume(1000, 0.0):
            out += [parse_chat_event(r.value) for r in batch]
        return out


@pytest.fixture
def env(topics: Topics) -> Iterator[Env]:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    engine = ScriptedEngine(token_delay_s=0.002)
    asyncio.run(engine.load(_src("v1")))
    asyncio.run(engine.load(_src("v2")))
    slots = ModelSlots(engine)
    slots.mark_ready("v1")
    slots.mark_ready("v2")
    store = MemoryRoutingStore()
    store.put(state(baseline="v1", candidate="v2", share_bp=5000, status="canary", salt="exp"))
    events = EventLogger(bus.producer(), topics.chat_events)
    gateway = Gateway(GatewayConfig(retry_backoff_s=0.0), store, slots, events)
    with serve_app(create_app(gateway)) as url:
        yield Env(engine, store, bus, topics, url, events)


def _src(version: str):
    from serving.engines import ModelSource

    return ModelSource(version, None)


def _expected_version(user: str) -> str:
    return "v2" if arm_for("exp", user, 5000) == "candidate" else "v1"


def test_non_streaming_completion_has_openai_shape_and_served_version(env: Env) -> None:
    client = env.client()
    raw = client.chat.completions.with_raw_response.create(
        model="policy", messages=[{"role": "user", "content": "hi there"}], max_tokens=5, user="alice"
    )
    reply = raw.parse()
    version = _expected_version("alice")
    assert reply.choices[0].message.content == scripted_reply(version, 5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.model == f"policy@{version}"
    assert raw.headers["x-flywheel-model-version"] == version
    assert reply.usage is not None and reply.usage.completion_tokens == 5 and reply.usage.prompt_tokens == 2


def test_streaming_relays_every_token_and_usage(env: Env) -> None:
    client = env.client()
    chunks = list(
        client.chat.completions.create(
            model="policy",
            messages=[{"role": "user", "content": "hey"}],
            max_tokens=12,
            stream=True,
            user="bob",
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    version = _expected_version("bob")
    assert text == scripted_reply(version, 12)
    assert {c.model for c in chunks} == {f"policy@{version}"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_users_split_between_arms_and_stay_there(env: Env) -> None:
    client = env.client()
    seen: dict[str, set[str]] = {}
    for i in range(20):
        for _ in range(2):
            r = client.chat.completions.create(
                model="policy", messages=[{"role": "user", "content": "x"}], max_tokens=1, user=f"u{i}"
            )
            seen.setdefault(f"u{i}", set()).add(r.model)
    assert all(len(v) == 1 for v in seen.values())
    assert {v.pop() for v in seen.values()} == {"policy@v1", "policy@v2"}


def test_errors_use_the_openai_format(env: Env) -> None:
    client = env.client()
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="policy", messages=[], max_tokens=3)
    assert bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    r = httpx.post(
        env.url + "/v1/chat/completions",
        json={
            "model": "policy",
            "messages": [{"role": "user", "content": "x"}],
            "metadata": {"instructions": '[{"kind": "nope"}]'},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata.instructions"


def test_disconnect_mid_stream_cancels_the_engine_request(env: Env) -> None:
    env.engine.token_delay_s = 0.02
    client = env.client()
    stream = client.chat.completions.create(
        model="policy", messages=[{"role": "user", "content": "long"}], max_tokens=500, stream=True, user="carol"
    )
    got = []
    for chunk in stream:
        got.append(chunk)
        if len(got) == 5:
            break
    stream.close()
    wait_until(lambda: env.engine.cancelled, 30, what="the engine request to be cancelled")
    assert len(env.engine.cancelled) == 1  # the engine stopped generating the other ~495 tokens
    r = httpx.get(env.url + "/metrics").text
    assert 'flywheel_serving_requests_total{arm="' in r and 'outcome="cancelled"' in r
    assert "flywheel_serving_in_flight_requests" in r
    # in-flight went back to zero on the served version
    version = _expected_version("carol")
    line = next(
        row
        for row in r.splitlines()
        if row.startswith("flywheel_serving_in_flight_requests{") and f'version="{version}"' in row
    )
    assert float(line.rsplit(" ", 1)[1]) == 0.0


def test_engine_is_retried_only_before_the_first_byte(env: Env) -> None:
    env.engine.fail_first = 2
    r = env.client().chat.completions.create(
        model="policy", messages=[{"role": "user", "content": "x"}], max_tokens=3, user="dave"
    )
    assert r.choices[0].message.content == scripted_reply(_expected_version("dave"), 3)
    env.engine.fail_first = 5
    with pytest.raises(openai.InternalServerError) as exc:  # 503 after the configured attempts
        env.client().chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "x"}], max_tokens=3, user="dave"
        )
    assert exc.value.status_code == 503


def test_turns_are_logged_as_chat_events_with_instructions(env: Env) -> None:
    instructions = [{"kind": "end_with_question"}, {"kind": "max_words", "limit": 30}]
    headers = {
        "X-Flywheel-Character": "pirate",
        "X-Flywheel-Conversation": "c-1",
        "X-Flywheel-Instructions": json.dumps(instructions),
    }
    client = env.client()
    msgs = [{"role": "system", "content": "be a pirate"}, {"role": "user", "content": "ahoy"}]
    r1 = client.chat.completions.create(model="policy", messages=msgs, max_tokens=4, user="erin", extra_headers=headers)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "more"}]
    client.chat.completions.create(
        model="policy", messages=msgs, max_tokens=4, user="erin", extra_headers=headers, stream=True
    ).close()
    client.chat.completions.create(model="policy", messages=msgs, max_tokens=4, user="erin", extra_headers=headers)
    events = [e for e in env.chat_events() if e.user_id == "erin"]
    types = [e.type for e in events]
    assert types.count("session_started") == 1 and types.count("user_message") == 3
    responses = [e for e in events if e.type == "model_response"]
    version = _expected_version("erin")
    assert len(responses) >= 2
    for e in responses:
        assert e.model_version == version and e.character_id == "pirate" and e.conversation_id == "c-1"
        assert [i.kind for i in e.instructions] == ["end_with_question", "max_words"]
        assert e.completion_tokens == 4 and e.latency_ms > 0
    assert [e.turn for e in responses][:1] == [1]
    assert env.events.stats().overflowed == 0


def test_health_ready_models(env: Env) -> None:
    health = httpx.get(env.url + "/health").json()
    assert health["status"] == "ok" and health["events"]["overflowed"] == 0
    assert httpx.get(env.url + "/ready").status_code == 200
    assert [m.id for m in env.client().models.list()] == ["policy"]


def test_event_buffer_overflow_is_counted_not_blocking(topics: Topics) -> None:
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    events = EventLogger(bus.producer(), topics.chat_events, capacity=3)  # not started: nothing drains
    from tests.conftest import event_dict

    accepted = [events.log(parse_chat_event(json.dumps(event_dict(user_id=f"u{i}")))) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert events.stats().overflowed == 2 and events.stats().queued == 3


def test_disconnect_during_a_non_streaming_request_cancels_the_engine(env: Env) -> None:
    env.engine.token_delay_s = 0.02
    client = env.client(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "x"}], max_tokens=500, user="frank"
        )
    wait_until(lambda: env.engine.cancelled, 30, what="the engine request to be cancelled")
    assert len(env.engine.cancelled) == 1


def test_a_conversation_keeps_its_version_when_the_canary_opens() -> None:
    from schemas import DeploymentState
    from serving.gateway.gateway_config import GatewayConfig
    from serving.gateway.handler import ChatHandler
    from serving.routing import MemoryRoutingStore
    from serving.routing.assignment import route

    class _Ready:
        def is_ready(self, version: str) -> bool:
            return True

    store = MemoryRoutingStore()
    now = datetime.now(UTC)
    store.put(DeploymentState(model="policy", baseline_version="v1", experiment_salt="s", updated_ts=now))
    handler = ChatHandler(GatewayConfig(), store, _Ready(), None)  # type: ignore[arg-type]
    users = [f"user-{i}" for i in range(400)]
    for u in users:
        assert handler.resolve("policy", u, f"conv-{u}", turn=1).version == "v1"
    canary = DeploymentState(
        model="policy",
        baseline_version="v1",
        candidate_version="v2",
        share_bp=5000,
        status="canary",
        experiment_salt="s",
        updated_ts=now,
    )
    store.put(canary)
    moved = [u for u in users if route(canary, u).arm == "candidate"]
    assert moved  # these users' new conversations go to the candidate...
    assert all(handler.resolve("policy", u, f"conv-{u}", turn=2).version == "v1" for u in moved)  # ...not running ones
    assert all(handler.resolve("policy", u, f"new-{u}", turn=1).version == "v2" for u in moved)
    store.put(canary.model_copy(update={"candidate_version": None, "share_bp": 0, "status": "idle"}))
    assert all(
        handler.resolve("policy", u, f"new-{u}", turn=2).version == "v1" for u in moved
    )  # rolled back: re-routed
