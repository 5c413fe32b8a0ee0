"""Characters and topics as the simulated users see them.

Built from the shared catalogue (``trainers.characters``) so that what users
ask, what characters promise and what the base model learnt come from one
distribution. Tests may build their own small catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import Instruction, words

# Words that do not make a reply "about" a topic.
_STOP = frozenset({"the", "a", "an", "your", "my", "our", "their", "of", "some"})


@dataclass(frozen=True)
class Topic:
    """What a conversation is about: words that show a reply stays on it, and what users say."""

    id: str
    keywords: tuple[str, ...]
    openers: tuple[str, ...]
    follow_ups: tuple[str, ...]


@dataclass(frozen=True)
class Character:
    """A persona: its system prompt (sent by the client app) and its verifiable instructions."""

    id: str
    name: str
    instructions: tuple[Instruction, ...]
    system_prompt: str = ""


@dataclass(frozen=True)
class Catalogue:
    characters: tuple[Character, ...]
    topics: tuple[Topic, ...]

    def character(self, character_id: str) -> Character:
        for c in self.characters:
            if c.id == character_id:
                return c
        raise KeyError(f"unknown character {character_id!r}")

    def topic(self, topic_id: str) -> Topic:
        for t in self.topics:
            if t.id == topic_id:
                return t
        raise KeyError(f"unknown topic {topic_id!r}")


def shared_catalogue() -> Catalogue:
    """The platform's catalogue: the characters and traffic topics the base model was built on.

    A topic's keywords are the content words of its subject ("the weather" → weather):
    a reply that never names the subject has left the user's topic.
    """
    from trainers.characters import CHARACTERS, TOPICS, render_system_prompt

    characters = tuple(Character(c.id, c.name, c.instructions, render_system_prompt(c)) for c in CHARACTERS)
    topics = tuple(
        Topic(t.id, tuple(w for w in words(t.subject) if w not in _STOP) or (t.id,), t.openers, t.follow_ups)
        for t in TOPICS
    )
    return Catalogue(characters, topics)
