"""Curation: outcome join, PII never reaching samples, dedup, quality and pair filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import PreferenceSample, RewardSample, SftSample, parse_message
from streams.processors import CurationConfig, CurationProcessor, SourcePartition

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
SRC = SourcePartition("chat.events", 0)
MODELS = {"samples.reward": RewardSample, "samples.sft": SftSample, "samples.preference": PreferenceSample}


class Feed:
    def __init__(self, make_event: Any, **config: Any) -> None:
        self.proc = CurationProcessor(CurationConfig(grace_s=60, **config))
        self.make_event = make_event
        self.offset = 0
        self.out: dict[str, list[Any]] = {t: [] for t in MODELS}

    def __call__(self, type_: str, at_s: float, conv: str = "c1", **fields: Any) -> None:
        doc = self.make_event(type_, ts=(T0 + timedelta(seconds=at_s)).isoformat(), conversation_id=conv, **fields)
        self.offset += 1
        for o in self.proc.process(SRC, self.offset - 1, "user-1", json.dumps(doc).encode()):
            self.out[o.topic].append(parse_message(MODELS[o.topic], o.value))

    def advance(self, at_s: float) -> None:
        for o in self.proc.advance_to(int((T0 + timedelta(seconds=at_s)).timestamp() * 1000)):
            self.out[o.topic].append(parse_message(MODELS[o.topic], o.value))

    def reply(self, at_s: float, turn: int, req: str, text: str, conv: str = "c1", **kw: Any) -> None:
        self(
            "model_response",
            at_s,
            conv=conv,
            turn=turn,
            request_id=req,
            text=text,
            instructions=[{"kind": "max_words", "limit": 30}],
            **kw,
        )


def test_reward_and_sft_samples_join_outcome_and_are_redacted(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="hi, mail me at jane.doe@example.com or call 555-123-4567")
    feed.reply(1, 1, "r1", "Sure Jane, I will write to you today. Anything else?")
    feed("user_message", 30, turn=2, text="no, thanks")
    (reward,) = feed.out["samples.reward"]
    (sft,) = feed.out["samples.sft"]
    assert reward.labels.continued and reward.labels.instruction_following and not reward.labels.violation
    assert reward.context[0].content == "hi, mail me at [EMAIL] or call [PHONE]"
    assert sft.context == reward.context and sft.response.startswith("Sure Jane")
    # A reply that leaks personal data is a policy violation: redacted in the reward sample, never SFT.
    feed.reply(31, 2, "r2", "Fine, I wrote to jane.doe@example.com for you. Anything else?")
    feed("user_message", 40, turn=3, text="ok")
    leaked = feed.out["samples.reward"][1]
    assert leaked.labels.violation and "[EMAIL]" in leaked.response and len(feed.out["samples.sft"]) == 1
    # The changelog never holds raw personal data either.
    assert b"jane.doe@example.com" not in b"".join(v for v in feed.proc.take_changes(SRC).values() if v)


def test_a_session_end_that_overtakes_the_next_message_does_not_hide_it(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="hello there")
    feed.reply(1, 1, "r1", "Hello! What would you like to talk about today?")
    feed("session_ended", 40, reason="user_left")  # from the client app, ahead of the gateway's events
    feed("user_message", 30, turn=2, text="pirates")
    (first,) = feed.out["samples.reward"]
    assert first.labels.continued
    feed.reply(31, 2, "r2", "Pirates it is. Shall I tell you about the Jolly Roger?")
    feed("user_message", 45, turn=3, text="stamped after the end")
    feed.advance(40 + 59)
    assert len(feed.out["samples.reward"]) == 1
    feed.advance(40 + 60)
    (_, second) = feed.out["samples.reward"]
    assert second.response.startswith("Pirates") and not second.labels.continued


def test_a_pending_session_end_survives_a_restore(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="hello there")
    feed.reply(1, 1, "r1", "Hello! What would you like to talk about today?")
    feed("session_ended", 40, reason="user_left")
    restored = CurationProcessor(CurationConfig(grace_s=60))
    restored.restore(SRC, {k: v for k, v in feed.proc.take_changes(SRC).items() if v is not None})
    outs = restored.advance_to(int((T0 + timedelta(seconds=40 + 60)).timestamp() * 1000))
    (reward,) = [parse_message(RewardSample, o.value) for o in outs if o.topic == "samples.reward"]
    assert reward.response.startswith("Hello!") and not reward.labels.continued


def test_violations_and_thumbs_down_never_become_sft(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="hello")
    feed.reply(1, 1, "r1", "You are such an idiot, go away now.")
    feed("user_message", 20, turn=2, text="rude")
    feed.reply(21, 2, "r2", "Sorry about that, how can I help you today?")
    feed("user_feedback", 22, turn=2, kind="thumbs_down")
    feed("user_message", 40, turn=3, text="whatever")
    assert len(feed.out["samples.reward"]) == 2 and feed.out["samples.sft"] == []
    assert feed.out["samples.reward"][0].labels.violation
    assert feed.out["samples.reward"][1].labels.thumbs_down


def test_exact_and_near_duplicates_are_dropped(make_event: Any) -> None:
    feed = Feed(make_event)
    texts = [
        "The stars tonight are bright and the moon is full over the quiet harbour town.",
        "the stars tonight are bright and the moon is full over the  quiet harbour town.",  # exact (normalised)
        "The stars tonight are bright and the moon is full over the quiet harbour town!",  # near
        "Cooking pasta needs salted boiling water and a little patience before you drain it.",
    ]
    for i, text in enumerate(texts):
        conv = f"c{i}"
        feed("user_message", i * 10, conv=conv, turn=1, text="tell me something")
        feed.reply(i * 10 + 1, 1, f"r{i}", text, conv=conv)
        feed("user_message", i * 10 + 5, conv=conv, turn=2, text="nice")
    assert [s.response for s in feed.out["samples.sft"]] == [texts[0], texts[3]]
    assert len(feed.out["samples.reward"]) == 4


def test_quality_filters_keep_degenerate_replies_out_of_sft(make_event: Any) -> None:
    feed = Feed(make_event)
    bad = ["Ok.", "no no no no no no no no no no no", "Это очень хороший ответ на ваш вопрос", "wow!!!!!!!!!!!!"]
    for i, text in enumerate(bad):
        conv = f"q{i}"
        feed("user_message", i * 10, conv=conv, turn=1, text="hey")
        feed.reply(i * 10 + 1, 1, f"q{i}", text, conv=conv)
        feed("user_message", i * 10 + 5, conv=conv, turn=2, text="hm")
    assert feed.out["samples.sft"] == [] and len(feed.out["samples.reward"]) == 4


def test_regeneration_gives_preference_pair_and_length_filter(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="tell me a joke")
    feed.reply(1, 1, "a", "Why did the chicken cross the road today?")
    feed.reply(3, 1, "b", "What do you call a fish with no eyes, friend?", regenerated=True)
    feed("user_message", 30, turn=2, text="haha")
    (pair,) = feed.out["samples.preference"]
    assert pair.chosen.startswith("What do you call") and pair.rejected.startswith("Why did")
    assert pair.source == "regenerate"
    labels = {s.response[:3]: s.labels for s in feed.out["samples.reward"]}
    assert labels["Wha"].continued and not labels["Why"].continued and labels["Why"].regenerated
    # Same situation, but the replies differ 4x in length: no pair.
    feed("user_message", 100, conv="c2", turn=1, text="tell me a joke")
    feed.reply(101, 1, "c", "Knock knock.", conv="c2")
    feed.reply(
        103,
        1,
        "d",
        "A long joke that goes on and on about a horse walking into a bar again.",
        conv="c2",
        regenerated=True,
    )
    feed("user_message", 130, conv="c2", turn=2, text="haha")
    assert len(feed.out["samples.preference"]) == 1


def test_style_stats_per_stream(make_event: Any) -> None:
    feed = Feed(make_event)
    feed("user_message", 0, turn=1, text="hi")
    feed.reply(1, 1, "r1", "Great question! Do you like tea? 😀")
    feed("user_message", 10, turn=2, text="yes")
    stats = feed.proc.style_stats()
    assert stats["reward"] == {"words": 6.0, "emoji": 1.0, "questions": 1.0, "stock_phrases": 1.0, "samples": 1.0}


def _opening(feed: Feed, conv: str, at: float, arm: str, text: str, continued: bool) -> None:
    """One conversation: the common opening, one reply from ``arm``, then the user goes on or leaves."""
    feed("user_message", at, conv=conv, turn=1, text="hi, who are you")
    feed.reply(at + 1, 1, f"{conv}-r1", text, conv=conv, arm=arm)
    if continued:
        feed("user_message", at + 20, conv=conv, turn=2, text="nice")
    else:
        feed("session_ended", at + 20, conv=conv, reason="user_left")
        feed.advance(at + 20 + 60)  # the end takes effect once event time passes it + grace


def test_the_two_arms_answering_the_same_opening_give_an_arms_pair(make_event: Any) -> None:
    feed = Feed(make_event, pair_across_arms=True)
    _opening(feed, "c1", 0, "baseline", "I am a pirate, and who might you be?", continued=False)
    _opening(feed, "c2", 100, "baseline", "Ahoy, I sail the seas. What brings you here?", continued=True)
    assert feed.out["samples.preference"] == []  # same arm: not an A/B comparison
    _opening(feed, "c3", 200, "candidate", "A pirate of the seven seas, friend. Your name?", continued=True)
    (pair,) = feed.out["samples.preference"]
    assert pair.source == "arms" and pair.chosen.startswith("A pirate") and pair.rejected.startswith("I am a pirate")
    assert [m.content for m in pair.context] == ["hi, who are you"]
    # The baseline reply that was paired is used once; the continued baseline reply still waits.
    _opening(feed, "c4", 300, "candidate", "Captain of a small ship, matey. And you?", continued=False)
    (_, second) = feed.out["samples.preference"]
    assert second.chosen.startswith("Ahoy") and second.rejected.startswith("Captain")


def test_arms_pairs_are_off_by_default(make_event: Any) -> None:
    feed = Feed(make_event)
    _opening(feed, "c1", 0, "baseline", "I am a pirate, and who might you be?", continued=False)
    _opening(feed, "c2", 100, "candidate", "A pirate of the seven seas, friend. Your name?", continued=True)
    assert feed.out["samples.preference"] == []


def test_unpaired_replies_survive_a_restore(make_event: Any) -> None:
    feed = Feed(make_event, pair_across_arms=True)
    _opening(feed, "c1", 0, "baseline", "I am a pirate, and who might you be?", continued=False)
    changes = feed.proc.take_changes(SRC)
    restored = CurationProcessor(feed.proc.config)
    restored.restore(SRC, {k: v for k, v in changes.items() if v is not None})
    feed.proc = restored
    _opening(feed, "c2", 100, "candidate", "A pirate of the seven seas, friend. Your name?", continued=True)
    (pair,) = feed.out["samples.preference"]
    assert pair.source == "arms" and pair.rejected.startswith("I am a pirate")
