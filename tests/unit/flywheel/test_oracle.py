"""The simulated world rewards what the verifiers do not see, and its oracle says how much.

Replies in each pair below pass or fail the same verifiable checks; only the engagement
drivers differ (length and emoji against how the user writes, a question about the
user's topic, picking up what the user said earlier).
"""

from __future__ import annotations

import pytest

from flywheel.sim import Catalogue, shared_catalogue
from flywheel.sim._catalogue import Character, Topic
from flywheel.sim._style import Style
from flywheel.sim.oracle import Oracle, SimContext, held_out_contexts

CHARACTER = Character("plain", "Plain", ())
TOPIC = Topic("music", ("music",), ("I love music.",), ("What should I play?",))
ORACLE = Oracle(seed=3)


def _ctx(style: Style, *user: str) -> SimContext:
    return SimContext(CHARACTER, TOPIC, style, user, tuple("Nice." for _ in user[1:]))


SHORT = "Music helps. Play guitar?"
LONG = "Music is a wonderful thing to share, and I think you would enjoy " * 3 + "playing some music?"


def test_terse_writers_want_short_replies_and_chatty_ones_long() -> None:
    terse, chatty = _ctx(Style("terse", False), "love music"), _ctx(Style("chatty", False), "I love music. " * 4)
    assert ORACLE.continue_probability(terse, SHORT) > ORACLE.continue_probability(terse, LONG) + 0.05
    assert ORACLE.continue_probability(chatty, LONG) > ORACLE.continue_probability(chatty, SHORT) + 0.05


def test_emoji_writers_like_emoji_and_plain_writers_do_not() -> None:
    emoji, plain = _ctx(Style("neutral", True), "I love music 😊"), _ctx(Style("neutral", False), "I love music.")
    with_emoji = "Music makes every day brighter, what do you like to play in music? 😊"
    without = "Music makes every day brighter, what do you like to play in music?"
    assert ORACLE.continue_probability(emoji, with_emoji) > ORACLE.continue_probability(emoji, without) + 0.03
    assert ORACLE.continue_probability(plain, without) > ORACLE.continue_probability(plain, with_emoji) + 0.03


def test_a_question_about_the_topic_beats_a_stock_question() -> None:
    ctx = _ctx(Style("neutral", False), "I love music.")
    on_topic = "That is lovely. Which music do you play most?"
    stock = "That is lovely. Music is great. Anything else?"
    assert ORACLE.continue_probability(ctx, on_topic) > ORACLE.continue_probability(ctx, stock) + 0.01


def test_picking_up_what_the_user_said_earlier_pays() -> None:
    ctx = _ctx(Style("neutral", False), "I love my grandmother's piano.", "What should I play?")
    recalls = "Try a slow waltz on your grandmother's piano, it suits music like that."
    forgets = "Try a slow waltz on a guitar, it suits music like that."
    assert ORACLE.continue_probability(ctx, recalls) > ORACLE.continue_probability(ctx, forgets) + 0.02


def test_the_oracle_is_deterministic_and_contexts_are_reproducible() -> None:
    catalogue: Catalogue = shared_catalogue()
    a, b = held_out_contexts(catalogue, 30), held_out_contexts(catalogue, 30)
    assert a == b and len({c.style for c in a}) >= 4
    assert Oracle(seed=3).continue_probability(a[0], SHORT) == pytest.approx(ORACLE.continue_probability(a[0], SHORT))
