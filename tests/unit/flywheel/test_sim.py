"""The user simulator on its own: decisions follow what the reply did, runs are reproducible."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from flywheel.sim import (
    Catalogue,
    Character,
    Population,
    SimClock,
    Simulator,
    SimulatorConfig,
    Topic,
    TurnReply,
    TurnRequest,
    continue_probability,
    draw_preferences,
    judge_reply,
)
from schemas import EndWithQuestion, MaxWords, NoEmoji, Topics, parse_chat_event, words
from streams import ChatEventProducer, EmbeddedBus, TopicPartition

CATALOGUE = Catalogue(
    characters=(Character("guide", "Guide", (EndWithQuestion(), MaxWords(limit=20), NoEmoji())),),
    topics=(Topic("space", ("space", "moon", "star"), ("tell me about the moon",), ("and then",)),),
)
GOOD = "The moon is a quiet place in space with soft grey dust. Do you want to know more?"
BROKEN = "The moon is a quiet place in space with soft grey dust and very long days and even longer nights there."
VIOLATING = "The moon is far away in space, you idiot. Do you want to know more?"


class ScriptedClient:
    """Stands in for the gateway: a fixed reply, or one chosen per request by ``pick``."""

    def __init__(self, text: str = GOOD, version: str = "v-test") -> None:
        self.text = text
        self.version = version
        self.requests: list[TurnRequest] = []

    async def complete(self, request: TurnRequest) -> TurnReply:
        self.requests.append(request)
        return TurnReply(text=self.text, model_version=self.version, arm="baseline", latency_ms=50.0)

    async def aclose(self) -> None:
        pass


def _prefs(n: int = 300, seed: int = 1) -> list:
    rng = random.Random(seed)
    return [draw_preferences(rng) for _ in range(n)]


def test_following_instructions_raises_every_users_continue_probability() -> None:
    instructions = CATALOGUE.characters[0].instructions
    good = judge_reply(GOOD, instructions, ("moon",))
    broken = judge_reply(BROKEN, instructions, ("moon",))
    assert good.follows_instructions and not broken.follows_instructions
    assert all(continue_probability(good, p) > continue_probability(broken, p) for p in _prefs())


def test_violation_lowers_continue_probability_and_draws_reports() -> None:
    instructions = CATALOGUE.characters[0].instructions
    clean, bad = judge_reply(GOOD, instructions, ("moon",)), judge_reply(VIOLATING, instructions, ("moon",))
    assert bad.violation and not clean.violation
    prefs = _prefs()
    drops = [continue_probability(clean, p) - continue_probability(bad, p) for p in prefs]
    assert min(drops) > 0 and sum(drops) / len(drops) > 0.3


def test_off_topic_and_degenerate_replies_cost_engagement() -> None:
    instructions = CATALOGUE.characters[0].instructions
    on = judge_reply(GOOD, instructions, ("moon",))
    off = judge_reply(GOOD, instructions, ("guitar",))
    # As long as the good reply, so that only being stuck differs (length has a taste of its own).
    stuck = judge_reply(" ".join(["moon"] * len(words(GOOD))) + "?", instructions, ("moon",))
    assert stuck.degenerate
    for p in _prefs():
        assert continue_probability(off, p) < continue_probability(on, p)
        assert continue_probability(stuck, p) < continue_probability(on, p)


def test_no_single_reply_length_pleases_everyone() -> None:
    """Hidden preferences differ: a short and a long compliant reply each win a real share of users."""
    short = judge_reply("Space is big. Curious?", (), ("space",))
    long = judge_reply(" ".join(["space is wide and full of stars"] * 6) + "?", (), ("space",))
    wins = Counter(continue_probability(short, p) > continue_probability(long, p) for p in _prefs(1000))
    assert wins[True] > 200 and wins[False] > 200


def test_population_is_reproducible_and_seed_dependent() -> None:
    a = Population.generate(50, seed=3, catalogue=CATALOGUE)
    assert a == Population.generate(50, seed=3, catalogue=CATALOGUE)
    assert a.users != Population.generate(50, seed=4, catalogue=CATALOGUE).users


def _run(text: str, seed: int = 5, days: int = 3, users: int = 60) -> tuple[Simulator, list]:
    bus = EmbeddedBus()
    topics = Topics("simtest")
    bus.create_topics(topics.specs())
    config = SimulatorConfig(users=users, seed=seed, concurrency=8)
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC))
    sim = Simulator(
        config,
        Population.generate(users, seed, CATALOGUE),
        ScriptedClient(text),
        ChatEventProducer(bus.producer(), topics.chat_events),
        clock,
    )
    sim.run_sync(days=days)
    consumer = bus.consumer()
    n = bus.partitions(topics.chat_events)
    consumer.assign({TopicPartition(topics.chat_events, p): 0 for p in range(n)})
    events = [parse_chat_event(r.value) for r in consumer.consume(100_000, 0.1)]
    return sim, events


def test_good_replies_keep_users_talking_and_coming_back() -> None:
    good, _ = _run(GOOD)
    bad, _ = _run(BROKEN)
    g, b = good.stats.version("v-test"), bad.stats.version("v-test")
    assert g.continue_rate > b.continue_rate + 0.15
    assert g.mean_depth > b.mean_depth
    # Day 1 visits are the same draw; afterwards satisfied users return more often.
    assert good.stats.visits_by_day[0] == bad.stats.visits_by_day[0]
    assert good.stats.visits_by_day[2] > bad.stats.visits_by_day[2]


def test_client_events_are_valid_and_follow_simulated_days() -> None:
    sim, events = _run(GOOD)
    kinds = Counter(e.type for e in events)
    assert kinds["session_ended"] == sim.stats.sessions_ended == sim.stats.sessions_started
    assert kinds["user_feedback"] > 0
    days = {int((e.ts - sim.clock.start).total_seconds() // 86_400) for e in events}
    assert days == {0, 1, 2}
    assert all(e.ts < datetime.now(UTC) for e in events)


def test_same_seed_same_run_other_seed_other_run() -> None:
    def fingerprint(events: list) -> list[str]:
        return sorted(e.model_dump_json() for e in events)

    _, first = _run(BROKEN, seed=11)
    _, again = _run(BROKEN, seed=11)
    _, other = _run(BROKEN, seed=12)
    assert fingerprint(first) == fingerprint(again)
    assert fingerprint(first) != fingerprint(other)


def test_requests_carry_user_character_instructions_and_event_time() -> None:
    client = ScriptedClient(BROKEN)
    sim = Simulator(
        SimulatorConfig(users=10, seed=2),
        Population.generate(10, 2, CATALOGUE),
        client,
        clock=SimClock(datetime(2026, 1, 1, tzinfo=UTC)),
    )
    sim.run_sync(days=1)
    assert client.requests
    regenerations = [r for r in client.requests if r.regenerate]
    for r in client.requests:
        assert r.user_id.startswith("sim-2-") and r.character_id == "guide"
        assert r.instructions == CATALOGUE.characters[0].instructions
        assert r.messages[-1]["role"] == "user" and r.ts.date() == datetime(2026, 1, 1).date()
    assert regenerations, "unhappy users ask for another reply"


def test_run_resumes_where_it_stopped() -> None:
    def make() -> Simulator:
        return Simulator(
            SimulatorConfig(users=30, seed=9),
            Population.generate(30, 9, CATALOGUE),
            ScriptedClient(BROKEN),
            clock=SimClock(datetime(2026, 1, 1, tzinfo=UTC)),
        )

    whole, parts = make(), make()
    whole.run_sync(days=2)
    parts.run_sync(stop=lambda: parts.stats.requests >= 15)
    assert parts.open_sessions > 0
    assert parts.day == 0
    parts.run_sync(days=1)  # finishes day 0's open sessions, then day 1
    assert parts.stats.by_version == whole.stats.by_version


def test_run_needs_a_limit() -> None:
    sim = Simulator(SimulatorConfig(users=1), Population.generate(1, 1, CATALOGUE), ScriptedClient())
    with pytest.raises(ValueError, match="never return"):
        sim.run_sync()


def test_wall_clock_run_stamps_real_time_and_compresses_days() -> None:
    from flywheel.sim import WallClock

    bus = EmbeddedBus()
    topics = Topics("simwall")
    bus.create_topics(topics.specs())
    config = SimulatorConfig(users=20, seed=4, concurrency=4)
    sim = Simulator(
        config,
        Population.generate(20, 4, CATALOGUE),
        ScriptedClient(GOOD),
        ChatEventProducer(bus.producer(), topics.chat_events),
        WallClock(time_scale=86_400 / 2),
    )
    before = datetime.now(UTC)
    sim.run_sync(days=2)
    consumer = bus.consumer()
    consumer.assign({TopicPartition(topics.chat_events, p): 0 for p in range(bus.partitions(topics.chat_events))})
    events = [parse_chat_event(r.value) for r in consumer.consume(100_000, 0.1)]
    assert sim.stats.days_opened == 2 and sim.stats.sessions_ended == sim.stats.sessions_started > 0
    assert all(before <= e.ts <= datetime.now(UTC) for e in events)
