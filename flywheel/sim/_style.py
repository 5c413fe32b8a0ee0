"""How a simulated user writes, and what that says about what they like.

The style shows in every message a user sends (short or long messages, emoji or none), so
a policy that reads the context can serve each user better than the population average.
The tastes behind a style conflict across segments: terse writers want short replies and
chatty writers long ones; emoji writers like emoji and plain writers dislike them. No single
reply template wins, and none of it is checked by the platform's verifiers: only
engagement labels reveal it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from schemas import EMOJI, words

Length = Literal["terse", "neutral", "chatty"]
LENGTHS: tuple[Length, ...] = ("terse", "neutral", "chatty")
_LENGTH_SHARES = (0.35, 0.30, 0.35)
_EMOJI_SHARE = 0.4
_USER_EMOJI = ("😊", "🙂", "😄", "✨", "🙌")
# Short enough that six chatty turns still fit a 384-token context.
_CHATTY_TAILS = (
    "I have wondered about it all week.",
    "My friends keep asking me this.",
    "Sorry, I just really wanted to ask.",
)
# Words a terse writer leaves out.
_FILLER = frozenset(
    [
        "i",
        "i'm",
        "im",
        "you",
        "your",
        "do",
        "does",
        "did",
        "what",
        "whats",
        "what's",
        "should",
        "is",
        "it",
        "it's",
        "its",
        "so",
        "like",
        "have",
        "has",
        "a",
        "an",
        "the",
        "really",
        "me",
        "my",
        "to",
        "for",
        "of",
        "at",
        "in",
        "on",
        "can",
        "could",
        "would",
        "how",
        "are",
        "am",
        "be",
        "this",
        "that",
        "there",
    ]
)
# (low, high) preferred reply length in words, by how the user writes.
_PREFERRED_WORDS: dict[Length, tuple[float, float]] = {"terse": (4, 10), "neutral": (12, 28), "chatty": (32, 55)}


@dataclass(frozen=True)
class Style:
    """A user's writing style: the visible half of their taste."""

    length: Length
    emoji: bool

    def render(self, text: str, rng: random.Random) -> str:
        """``text`` (a catalogue message) as this user would type it."""
        if self.length == "terse":
            kept = [w for w in words(text) if w not in _FILLER][:4] or words(text)[:3]
            text = " ".join(kept) + ("?" if text.rstrip().endswith("?") else "")
        elif self.length == "chatty":
            text = f"{text} {rng.choice(_CHATTY_TAILS)}"
        if self.emoji:
            text = f"{text} {rng.choice(_USER_EMOJI)}"
        return text

    def preferred_words(self, rng: random.Random) -> float:
        low, high = _PREFERRED_WORDS[self.length]
        return rng.uniform(low, high)

    def emoji_affinity(self, rng: random.Random) -> float:
        return rng.uniform(0.5, 1.2) if self.emoji else rng.uniform(-0.9, -0.2)

    @property
    def key(self) -> str:
        return f"{self.length}{'+emoji' if self.emoji else ''}"


STYLES: tuple[Style, ...] = tuple(Style(length, emoji) for length in LENGTHS for emoji in (False, True))


def draw_style(rng: random.Random) -> Style:
    length = rng.choices(LENGTHS, _LENGTH_SHARES)[0]
    return Style(length, rng.random() < _EMOJI_SHARE)


def has_emoji(text: str) -> bool:
    return bool(EMOJI.search(text))
