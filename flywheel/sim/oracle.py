"""The simulated world's ground truth: the expected continue probability of any reply.

For reporting only. No platform package (schemas, streams, trainers, serving) and no
part of the CLI's wiring may import this module (an import-linter contract in
pyproject.toml enforces it): the platform learns only from events, as it would in
production.

A context fixes what a model can see: the character, the conversation so far and how the
user writes (their ``Style``). What it cannot see, the rest of the user's taste, is
averaged over users who write like that: the oracle value is the mean continue
probability over a fixed sample of such users.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from flywheel.sim._catalogue import Catalogue, Character, Topic
from flywheel.sim._judge import continue_probability, judge_reply
from flywheel.sim._population import Preferences, draw_preferences
from flywheel.sim._style import STYLES, Style, draw_style

_FIRST_REPLY = "That sounds lovely, tell me more."


@dataclass(frozen=True)
class SimContext:
    """One place in a conversation where a model replies."""

    character: Character
    topic: Topic
    style: Style
    user_messages: tuple[str, ...]  # the user's messages so far, the last one is answered
    assistant_messages: tuple[str, ...] = ()  # replies between them

    def messages(self) -> tuple[dict[str, str], ...]:
        """The chat messages a client app would send for this context."""
        out: list[dict[str, str]] = []
        if self.character.system_prompt:
            out.append({"role": "system", "content": self.character.system_prompt})
        for i, text in enumerate(self.user_messages):
            out.append({"role": "user", "content": text})
            if i < len(self.assistant_messages):
                out.append({"role": "assistant", "content": self.assistant_messages[i]})
        return tuple(out)


class Oracle:
    """True expected continue probability of a reply in a context."""

    def __init__(self, seed: int = 0, users_per_style: int = 64) -> None:
        rng = random.Random(f"oracle:{seed}")
        self._users: dict[Style, tuple[Preferences, ...]] = {
            style: tuple(draw_preferences(rng, style) for _ in range(users_per_style)) for style in STYLES
        }

    def continue_probability(self, context: SimContext, reply: str) -> float:
        judgement = judge_reply(
            reply, context.character.instructions, context.topic.keywords, earlier=context.user_messages[:-1]
        )
        return statistics.fmean(continue_probability(judgement, prefs) for prefs in self._users[context.style])


def held_out_contexts(catalogue: Catalogue, n: int, seed: int = 1_000_003) -> tuple[SimContext, ...]:
    """``n`` contexts as the simulator would produce them, from a seed of their own (no
    simulated session uses it): first turns, and second turns after a neutral reply."""
    rng = random.Random(f"held-out-contexts:{seed}")
    out = []
    for i in range(n):
        character = rng.choice(catalogue.characters)
        topic = rng.choice(catalogue.topics)
        style = draw_style(rng)
        opener = style.render(rng.choice(topic.openers), rng)
        if i % 3 == 2:
            follow_up = style.render(rng.choice(topic.follow_ups), rng)
            out.append(SimContext(character, topic, style, (opener, follow_up), (_FIRST_REPLY,)))
        else:
            out.append(SimContext(character, topic, style, (opener,)))
    return tuple(out)
