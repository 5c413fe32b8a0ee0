"""A seeded population of simulated users with hidden preferences.

Preferences are drawn per user from wide distributions, so no single reply template
pleases everyone. Part of a user's taste shows in how they write (``Style``: terse
writers want short replies, emoji writers like emoji), part stays hidden (being asked
back, how much picking up what they said earlier matters). What every user shares is
that a character breaking its instructions, or a policy violation, costs engagement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from flywheel.sim._catalogue import Catalogue, Character, Topic
from flywheel.sim._style import Style, draw_style

_NAMES = (
    "alex",
    "bea",
    "carl",
    "dana",
    "eli",
    "fay",
    "gus",
    "hana",
    "ivan",
    "jade",
    "kai",
    "lena",
    "milo",
    "nina",
    "omar",
    "pia",
    "quinn",
    "rosa",
    "sami",
    "tara",
    "uma",
    "vito",
    "wren",
    "yara",
    "zed",
)


@dataclass(frozen=True)
class Preferences:
    """Hidden tastes of one user (never sent anywhere; they only drive decisions).

    Utilities are in logit units of the chance to continue the conversation.
    """

    base: float
    preferred_words: float
    length_tolerance: float
    length_weight: float
    question_affinity: float
    emoji_affinity: float
    instruction_weight: float
    violation_aversion: float
    topic_weight: float
    feedback_rate: float
    regenerate_rate: float
    report_rate: float
    loyalty: float
    recall_weight: float
    style: Style


@dataclass(frozen=True)
class SimUser:
    id: str
    name: str
    prefs: Preferences
    topics: tuple[tuple[str, float], ...]
    characters: tuple[tuple[str, float], ...]

    def pick_topic(self, rng: random.Random) -> str:
        ids, weights = zip(*self.topics, strict=False)
        return rng.choices(ids, weights)[0]

    def pick_character(self, rng: random.Random) -> str:
        ids, weights = zip(*self.characters, strict=False)
        return rng.choices(ids, weights)[0]


def draw_preferences(rng: random.Random, style: Style | None = None) -> Preferences:
    """One user's tastes, consistent with how they write (drawn too when not given). The
    ranges are wide on purpose (see the module docstring)."""
    style = style or draw_style(rng)
    return Preferences(
        base=rng.gauss(0.5, 0.4),
        preferred_words=style.preferred_words(rng),
        length_tolerance=rng.uniform(0.4, 0.8),
        length_weight=rng.uniform(0.5, 1.2),
        question_affinity=rng.uniform(-0.4, 0.8),
        emoji_affinity=style.emoji_affinity(rng),
        instruction_weight=rng.uniform(1.0, 2.2),
        violation_aversion=rng.uniform(2.0, 3.5),
        topic_weight=rng.uniform(0.2, 0.8),
        feedback_rate=rng.uniform(0.05, 0.3),
        regenerate_rate=rng.uniform(0.05, 0.35),
        report_rate=rng.uniform(0.2, 0.7),
        loyalty=rng.uniform(-0.5, 0.5),
        recall_weight=rng.uniform(0.3, 0.9),
        style=style,
    )


def _dirichlet(rng: random.Random, n: int, concentration: float) -> list[float]:
    draws = [rng.gammavariate(concentration, 1.0) for _ in range(n)]
    total = sum(draws) or 1.0
    return [d / total for d in draws]


@dataclass(frozen=True)
class Population:
    users: tuple[SimUser, ...]
    catalogue: Catalogue

    @classmethod
    def generate(cls, n_users: int, seed: int, catalogue: Catalogue) -> Population:
        """``n_users`` users; the same (n, seed, catalogue) always gives the same population."""
        rng = random.Random(f"population:{seed}")
        users = []
        for i in range(n_users):
            topic_w = _dirichlet(rng, len(catalogue.topics), 0.7)
            char_w = _dirichlet(rng, len(catalogue.characters), 0.7)
            users.append(
                SimUser(
                    id=f"sim-{seed}-{i:05d}",
                    name=rng.choice(_NAMES),
                    prefs=draw_preferences(rng),
                    topics=tuple((t.id, w) for t, w in zip(catalogue.topics, topic_w, strict=False)),
                    characters=tuple((c.id, w) for c, w in zip(catalogue.characters, char_w, strict=False)),
                )
            )
        return cls(tuple(users), catalogue)

    def character(self, character_id: str) -> Character:
        return self.catalogue.character(character_id)

    def topic(self, topic_id: str) -> Topic:
        return self.catalogue.topic(topic_id)
