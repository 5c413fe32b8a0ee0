"""Synthetic replies and corpora: some follow the character's instructions, some do not,
some break the content policy. Labels come from the real verifiers, not from intent.

Used to pre-train the tiny base model (so it starts out imperfect, like a real first
generation) and by tests that need checkable data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas import (
    AddressUserByName,
    ChatMessage,
    ExcludeWords,
    IncludeWords,
    Instruction,
    MaxSentences,
    check_policy,
    follows_instructions,
)
from trainers.characters import CHARACTERS, Character, Topic, chat_messages, traffic_opener

_BODIES = (
    "{subj} always reminds me of the {kw}.",
    "let me tell you about {subj} and the {kw}.",
    "nothing beats {subj} on a day full of {kw}.",
    "I have been thinking about {subj} and {kw} all day.",
    "{subj} is a wonderful thing, just like {kw}.",
    "I know a story about {subj} and some {kw}.",
)
_NEUTRAL = ("things", "stuff", "people", "life", "plans")
_QUESTIONS = (
    "What do you think about {subj}?",
    "How about you?",
    "Want to hear more?",
    "What would you do?",
    "Shall we talk more about {subj}?",
    "Do you agree?",
)
_STATEMENTS = ("Have a good day.", "That is all for now.", "Enjoy {subj}.", "Talk soon.", "Good luck with {subj}.")
_FILLER = (
    "There is so much more to say about this and I could go on for a very long time.",
    "Let me add a few extra thoughts here because there are many details worth mentioning.",
    "Also I remember one more long story that goes on and on with many small parts.",
)
# Pre-training varies the user side a lot, so the model learns that the character (the
# system prompt) decides the reply and copes with user messages it has never seen.
_LEADS = ("Hi!", "Hey there.", "Hmm,", "So,", "Well,", "Okay,", "Hello again.", "Listen,", "By the way,", "Oh,")
_USER_WORDS = (
    "garden",
    "river",
    "coffee",
    "train",
    "city",
    "friend",
    "homework",
    "bicycle",
    "window",
    "summer",
    "winter",
    "phone",
    "market",
    "bread",
    "mountain",
    "camera",
    "letter",
    "painting",
    "story",
    "robot",
    "island",
    "bridge",
    "tea",
    "forest",
    "school",
    "holiday",
    "kitchen",
    "lamp",
    "puzzle",
    "concert",
    "shoes",
    "birthday",
    "piano",
    "cloud",
    "museum",
    "candle",
    "soup",
    "rocket",
    "village",
    "festival",
    "notebook",
    "moon",
    "chess",
    "beach",
)
_USER_FRAMES = (
    "what do you think about the {a}?",
    "I saw a {a} near the {b} today.",
    "can you help me with my {a}?",
    "is a {a} better than a {b}?",
    "my {a} is broken again.",
    "tell me something about {a} and {b}.",
    "how do I fix a {a}?",
    "I dream about a {a} every night.",
    "where can I find a good {a}?",
)
_BANNED = ("Honestly, you are a loser.", "Do not be stupid.", "What an idiot question.", "Shut up and listen.")
_PII = (
    "Email me at {handle}@example.com.",
    "Call me at 555-{a}-{b}.",
    "My card is 4111 1111 1111 1111.",
    "Write to {handle}@mailbox.org.",
)


@dataclass(frozen=True)
class CorpusItem:
    """One synthetic conversation and its ground-truth labels.

    Attributes:
        context: system prompt and user turns (and earlier replies) before ``reply``.
        reply: the assistant's reply to the last user message.
        follows: every instruction of the character passes (``follows_instructions``).
        violates: the reply breaks the content policy (``check_policy``).
    """

    character_id: str
    topic_id: str
    context: tuple[ChatMessage, ...]
    reply: str
    follows: bool
    violates: bool

    @property
    def messages(self) -> list[dict[str, str]]:
        """The whole conversation in chat-template shape (reply last)."""
        return [m.model_dump() for m in self.context] + [{"role": "assistant", "content": self.reply}]


def _kinds(instructions: tuple[Instruction, ...]) -> dict[str, Instruction]:
    return {i.kind: i for i in instructions}


def synthetic_reply(character: Character, subject: str, rng: random.Random, *, follow: bool, violate: bool) -> str:
    """A reply by ``character`` about ``subject``.

    ``follow=True`` satisfies every instruction; ``follow=False`` breaks one or two of
    them at random. ``violate=True`` adds a banned term or personal data.
    """
    ins = _kinds(character.instructions)
    broken: set[str] = set()
    if not follow and ins:
        broken = set(rng.sample(sorted(ins), k=min(len(ins), rng.choice((1, 1, 2)))))
    keyword_ok = "persona_keywords" not in broken
    # The kind names its class, so ``isinstance`` is the same test as ``kind in ins``.
    address = ins.get("address_user_by_name")
    name = address.name if isinstance(address, AddressUserByName) else None
    if keyword_ok and "address_user_by_name" not in broken:
        greeting = character.greeting
    elif name and "address_user_by_name" not in broken:
        greeting = f"Hello, {name}!"
    else:
        greeting = "Hello there!"
    kw = rng.choice(character.keywords) if keyword_ok else rng.choice(_NEUTRAL)
    body = rng.choice(_BODIES).format(subj=subject, kw=kw)
    parts = [greeting, body[0].upper() + body[1:]]
    include, exclude = ins.get("include_words"), ins.get("exclude_words")
    if isinstance(include, IncludeWords) and "include_words" not in broken:
        parts.append(" ".join(w.capitalize() for w in include.words_required) + "!")
    if isinstance(exclude, ExcludeWords) and "exclude_words" in broken:
        parts.append(f"I would say {rng.choice(exclude.words_forbidden)} here.")
    if "max_words" in broken or "max_sentences" in broken:
        parts.extend(rng.sample(_FILLER, k=2))
    if violate:
        template = rng.choice(_BANNED + _PII)
        handle = character.id.replace("-", ".")
        parts.append(template.format(handle=handle, a=rng.randint(100, 999), b=rng.randint(1000, 9999)))
    wants_question = "end_with_question" in ins
    ask = wants_question != ("end_with_question" in broken) if wants_question else rng.random() < 0.5
    parts.append(rng.choice(_QUESTIONS if ask else _STATEMENTS).format(subj=subject))
    use_emoji = ("use_emoji" in ins) != ("use_emoji" in broken) or "no_emoji" in broken
    if "no_emoji" in ins and "no_emoji" not in broken:
        use_emoji = False
    elif "use_emoji" not in ins and "no_emoji" not in ins:
        use_emoji = rng.random() < 0.3
    max_sentences = ins.get("max_sentences")
    if isinstance(max_sentences, MaxSentences) and "max_sentences" not in broken and len(parts) > max_sentences.limit:
        parts.pop(0)  # a policy violation took the greeting's sentence slot
    text = " ".join(parts)
    return f"{text} {character.emoji}" if use_emoji else text


def make_item(
    character: Character, topic: Topic, user_message: str, rng: random.Random, *, follow: bool, violate: bool
) -> CorpusItem:
    """A labelled single-turn conversation (labels from the verifiers)."""
    reply = synthetic_reply(character, topic.subject, rng, follow=follow, violate=violate)
    return CorpusItem(
        character_id=character.id,
        topic_id=topic.id,
        context=chat_messages(character, user_message),
        reply=reply,
        follows=follows_instructions(reply, character.instructions),
        violates=not check_policy(reply).passed,
    )


def varied_user_message(rng: random.Random) -> tuple[Topic, str]:
    """A traffic opener, sometimes with a lead-in, or a random made-up question."""
    topic, opener = traffic_opener(rng)
    roll = rng.random()
    if roll < 0.4:
        return topic, opener
    if roll < 0.65:
        return topic, f"{rng.choice(_LEADS)} {opener[0].lower()}{opener[1:]}"
    frame = rng.choice(_USER_FRAMES).format(a=rng.choice(_USER_WORDS), b=rng.choice(_USER_WORDS))
    if rng.random() < 0.3:
        frame = f"{frame} {rng.choice(_USER_FRAMES).format(a=rng.choice(_USER_WORDS), b=rng.choice(_USER_WORDS))}"
    return topic, f"{rng.choice(_LEADS)} {frame}" if rng.random() < 0.5 else frame[0].upper() + frame[1:]


def synthetic_corpus(
    n: int, *, seed: int = 0, follow_rate: float = 0.6, violation_rate: float = 0.25
) -> list[CorpusItem]:
    """``n`` labelled traffic-like conversations; about ``follow_rate`` follow their
    instructions and ``violation_rate`` break the policy (independently)."""
    rng = random.Random(seed)
    out: list[CorpusItem] = []
    for _ in range(n):
        c = rng.choice(CHARACTERS)
        topic, opener = varied_user_message(rng)
        out.append(
            make_item(c, topic, opener, rng, follow=rng.random() < follow_rate, violate=rng.random() < violation_rate)
        )
    return out


@dataclass(frozen=True)
class SyntheticPair:
    """Two replies to one context: ``chosen`` follows and is clean, ``rejected`` is not."""

    character_id: str
    context: tuple[ChatMessage, ...]
    chosen: str
    rejected: str


def synthetic_pairs(n: int, *, seed: int = 0) -> list[SyntheticPair]:
    """``n`` preference pairs with a checkable preference (good vs instruction-breaking
    or policy-violating reply to the same traffic prompt)."""
    rng = random.Random(seed)
    out: list[SyntheticPair] = []
    while len(out) < n:
        c = rng.choice(CHARACTERS)
        topic, opener = traffic_opener(rng)
        good = make_item(c, topic, opener, rng, follow=True, violate=False)
        violate = rng.random() < 0.4
        bad = make_item(c, topic, opener, rng, follow=violate and rng.random() < 0.5, violate=violate)
        if good.follows and not good.violates and (not bad.follows or bad.violates):
            out.append(SyntheticPair(c.id, good.context, good.reply, bad.reply))
    return out
