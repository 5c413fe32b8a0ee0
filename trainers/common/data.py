"""Training examples as plain data: a prompt (context + the character's instructions)
and replies to it. Converters from the sample topics live here too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas import ChatMessage, EngagementLabels, Instruction, PreferenceSample, RewardSample, SftSample
from trainers.characters import CHARACTERS_BY_ID, render_system_prompt


@dataclass(frozen=True)
class Prompt:
    """A context to reply to, and the instructions the reply is judged by."""

    context: tuple[ChatMessage, ...]
    instructions: tuple[Instruction, ...] = ()
    character_id: str = ""

    @property
    def messages(self) -> list[dict[str, str]]:
        return [m.model_dump() for m in self.context]

    def with_reply(self, reply: str) -> list[dict[str, str]]:
        return [*self.messages, {"role": "assistant", "content": reply}]


@dataclass(frozen=True)
class Pair:
    """Two replies to one prompt; ``chosen`` is the better one."""

    prompt: Prompt
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Demonstration:
    """A reply worth imitating."""

    prompt: Prompt
    reply: str


@dataclass(frozen=True)
class Labelled:
    """A reply and whether the user continued after it (pointwise reward data)."""

    prompt: Prompt
    reply: str
    label: float
    extra: dict[str, float] = field(default_factory=dict)


def prompt_of(sample: SftSample | PreferenceSample | RewardSample) -> Prompt:
    context = tuple(sample.context)
    character = CHARACTERS_BY_ID.get(sample.character_id)
    if character is not None and context and context[0].role != "system":
        # Chat events carry what users said, not the client's system prompt: put the
        # character's prompt back so training sees the context serving and the gate see.
        context = (ChatMessage(role="system", content=render_system_prompt(character)), *context)
    return Prompt(context, tuple(sample.instructions), sample.character_id)


def pairs_from_samples(samples: Sequence[PreferenceSample]) -> list[Pair]:
    return [Pair(prompt_of(s), s.chosen, s.rejected) for s in samples]


def demonstrations_from_samples(samples: Sequence[SftSample]) -> list[Demonstration]:
    return [Demonstration(prompt_of(s), s.response) for s in samples]


def engagement_label(labels: EngagementLabels) -> float:
    """1 when the user engaged with the reply, from every signal they gave: a thumbs down
    or a request for another reply outweighs continuing, a thumbs up counts as engaging."""
    if labels.thumbs_down or labels.regenerated:
        return 0.0
    return 1.0 if labels.thumbs_up or labels.continued else 0.0


def labelled_from_samples(samples: Sequence[RewardSample]) -> list[Labelled]:
    return [Labelled(prompt_of(s), s.response, engagement_label(s.labels)) for s in samples]
