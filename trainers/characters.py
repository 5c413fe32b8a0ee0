"""Domain data: the characters, their verifiable instructions, the conversation topics,
and the held-out evaluation prompts.

The simulator, the demo, the base-model bootstrap, the trainer worker and the offline
gate all draw from here, so "what a character promised" means the same thing everywhere.
Held-out evaluation prompts are separate from traffic *by construction*: they are built
from their own topics and their own user phrasings, none of which the traffic side uses
(``is_held_out`` recognises them; a test checks the two sets are disjoint).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas import (
    AddressUserByName,
    ChatMessage,
    EndWithQuestion,
    ExcludeWords,
    IncludeWords,
    Instruction,
    MaxSentences,
    MaxWords,
    NoEmoji,
    PersonaKeywords,
    UseEmoji,
)


@dataclass(frozen=True)
class Character:
    """A chat character: who it is and what it promises (verifiable instructions).

    Attributes:
        id: stable identifier (``character_id`` in chat events).
        name: display name.
        persona: one-line description, first line of the system prompt.
        keywords: persona vocabulary; replies "in character" use some of these.
        instructions: verifiable promises, checked by ``schemas.check_instructions``.
        greeting: how the character opens a reply when it follows its persona.
        emoji: the emoji this character uses when it uses any.
    """

    id: str
    name: str
    persona: str
    keywords: tuple[str, ...]
    instructions: tuple[Instruction, ...]
    greeting: str
    emoji: str = "\U0001f60a"


@dataclass(frozen=True)
class Topic:
    """A conversation topic with the ways users open and continue it.

    Attributes:
        id: stable identifier.
        subject: noun phrase used inside replies ("the weather").
        openers: first user messages.
        follow_ups: later user messages in the same conversation.
    """

    id: str
    subject: str
    openers: tuple[str, ...]
    follow_ups: tuple[str, ...]


@dataclass(frozen=True)
class EvalPrompt:
    """One held-out evaluation prompt: a character and a user message, never seen in traffic."""

    prompt_id: str
    character_id: str
    topic_id: str
    user_message: str


CHARACTERS: tuple[Character, ...] = (
    Character(
        id="captain-mara",
        name="Captain Mara",
        persona="You are Captain Mara, a cheerful pirate captain who sails the seven seas.",
        keywords=("ahoy", "sea", "ship", "treasure", "sail"),
        instructions=(
            AddressUserByName(name="matey"),
            PersonaKeywords(keywords=("ahoy", "sea", "ship", "treasure", "sail"), min_count=1),
            EndWithQuestion(),
            MaxWords(limit=40),
        ),
        greeting="Ahoy, matey!",
        emoji="\u2693",
    ),
    Character(
        id="chef-luca",
        name="Chef Luca",
        persona="You are Chef Luca, a warm Italian chef who loves fresh ingredients.",
        keywords=("kitchen", "recipe", "basil", "pasta", "tomato"),
        instructions=(
            IncludeWords(words_required=("delicious",)),
            UseEmoji(),
            MaxWords(limit=45),
        ),
        greeting="Ciao, my friend!",
        emoji="\U0001f35d",
    ),
    Character(
        id="coach-riley",
        name="Coach Riley",
        persona="You are Coach Riley, an upbeat fitness coach who believes in steady progress.",
        keywords=("goal", "train", "strong", "progress", "practice"),
        instructions=(
            PersonaKeywords(keywords=("goal", "train", "strong", "progress", "practice"), min_count=1),
            ExcludeWords(words_forbidden=("maybe", "whatever")),
            NoEmoji(),
            EndWithQuestion(),
        ),
        greeting="Hey champ!",
        emoji="\U0001f4aa",
    ),
    Character(
        id="elder-quill",
        name="Elder Quill",
        persona="You are Elder Quill, an ancient wizard who speaks in calm riddles.",
        keywords=("spell", "magic", "ancient", "stars", "scroll"),
        instructions=(
            PersonaKeywords(keywords=("spell", "magic", "ancient", "stars", "scroll"), min_count=1),
            NoEmoji(),
            MaxSentences(limit=3),
        ),
        greeting="Greetings, traveler.",
        emoji="\u2728",
    ),
    Character(
        id="unit-seven",
        name="Unit Seven",
        persona="You are Unit Seven, a precise and friendly robot assistant.",
        keywords=("compute", "data", "circuits", "logic", "signal"),
        instructions=(
            IncludeWords(words_required=("beep",)),
            ExcludeWords(words_forbidden=("feel", "love")),
            MaxWords(limit=30),
        ),
        greeting="Greetings, human.",
        emoji="\U0001f916",
    ),
    Character(
        id="fern",
        name="Fern",
        persona="You are Fern, a gentle gardener who sees life as a growing garden.",
        keywords=("garden", "bloom", "soil", "seeds", "sunshine"),
        instructions=(
            PersonaKeywords(keywords=("garden", "bloom", "soil", "seeds", "sunshine"), min_count=1),
            UseEmoji(),
            EndWithQuestion(),
        ),
        greeting="Hello, dear sprout!",
        emoji="\U0001f33b",
    ),
)
CHARACTERS_BY_ID: dict[str, Character] = {c.id: c for c in CHARACTERS}

# Traffic topics: what simulated (and curated) users talk about.
TOPICS: tuple[Topic, ...] = (
    Topic(
        "weather",
        "the weather",
        (
            "What's the weather like where you are?",
            "It is raining again today.",
            "Do you like sunny days?",
            "It's so cold this morning.",
        ),
        ("Does rain make you sad?", "What should I wear today?", "Is winter your favourite season?"),
    ),
    Topic(
        "food",
        "dinner",
        (
            "What should I cook for dinner?",
            "I'm really hungry right now.",
            "Do you have a favourite meal?",
            "I burned my toast this morning.",
        ),
        ("Is pizza a good idea?", "Can you suggest something quick?", "What about dessert?"),
    ),
    Topic(
        "travel",
        "a trip",
        (
            "I want to go on a trip soon.",
            "Where should I travel this summer?",
            "Have you ever been to the mountains?",
            "I'm packing for a holiday.",
        ),
        ("Is the beach better than the city?", "What should I pack?", "How do I find cheap flights?"),
    ),
    Topic(
        "music",
        "music",
        (
            "What music do you like?",
            "I just learned a new song on guitar.",
            "Can you recommend a band?",
            "I love singing in the shower.",
        ),
        ("Do you play an instrument?", "Is jazz hard to learn?", "What song should I learn next?"),
    ),
    Topic(
        "work",
        "work",
        (
            "Work was really stressful today.",
            "I have a big meeting tomorrow.",
            "My boss gave me a new project.",
            "I'm thinking about changing jobs.",
        ),
        ("How do I stay focused?", "Should I ask for a raise?", "How do I relax after work?"),
    ),
    Topic(
        "pets",
        "your pet",
        (
            "My dog learned a new trick!",
            "Should I get a cat?",
            "My hamster escaped last night.",
            "Do you like animals?",
        ),
        ("What should I name my puppy?", "How do I train a cat?", "Do fish get bored?"),
    ),
    Topic(
        "sports",
        "the game",
        (
            "Did you watch the game last night?",
            "I started running every morning.",
            "I want to learn to swim.",
            "My team lost again.",
        ),
        ("How do I get faster?", "Is football fun to play?", "How often should I exercise?"),
    ),
    Topic(
        "movies",
        "the movie",
        (
            "I watched a great movie yesterday.",
            "Can you suggest a film for tonight?",
            "Do you like scary movies?",
            "What's the best movie ever made?",
        ),
        ("Are sequels ever good?", "Should I watch it at the cinema?", "Who is your favourite actor?"),
    ),
)
TOPICS_BY_ID: dict[str, Topic] = {t.id: t for t in TOPICS}

# Held-out topics and phrasings: never used by the traffic side. Every held-out user
# message starts with one of these lead-ins, which no traffic opener uses.
_HELD_OUT_LEADS: tuple[str, ...] = ("Tell me honestly,", "Quick question:", "I keep wondering,")
_HELD_OUT_TOPICS: tuple[Topic, ...] = (
    Topic(
        "space",
        "the stars above",
        (
            "what would you pack for a trip to the moon?",
            "do you think there is life on other planets?",
            "how far away is the nearest star?",
        ),
        (),
    ),
    Topic(
        "history",
        "old castles",
        (
            "what was life like in a medieval castle?",
            "who built the first bridges?",
            "would you rather live a hundred years ago?",
        ),
        (),
    ),
    Topic(
        "art",
        "painting",
        (
            "how do I start painting with watercolours?",
            "what makes a drawing beautiful?",
            "should I visit an art museum this weekend?",
        ),
        (),
    ),
    Topic(
        "ocean",
        "the deep ocean",
        (
            "what lives at the bottom of the ocean?",
            "are whales smarter than dolphins?",
            "how do I get better at snorkeling?",
        ),
        (),
    ),
    Topic(
        "books",
        "a good book",
        (
            "what book should I read next?",
            "is it better to read on paper or a screen?",
            "how do I build a reading habit?",
        ),
        (),
    ),
)
HELD_OUT_TOPIC_IDS: frozenset[str] = frozenset(t.id for t in _HELD_OUT_TOPICS)

_INSTRUCTION_SENTENCES = {
    "max_words": lambda i: f"Keep every reply under {i.limit} words.",
    "max_sentences": lambda i: f"Use at most {i.limit} sentences.",
    "end_with_question": lambda i: "Always end your reply with a question.",
    "include_words": lambda i: "Always use the word " + " and ".join(f'"{w}"' for w in i.words_required) + ".",
    "exclude_words": lambda i: "Never say " + " or ".join(f'"{w}"' for w in i.words_forbidden) + ".",
    "address_user_by_name": lambda i: f'Address the user as "{i.name}".',
    "no_emoji": lambda i: "Never use emoji.",
    "use_emoji": lambda i: "Use at least one emoji.",
    "persona_keywords": lambda i: (
        "Stay in character and mention " + ", ".join(i.keywords[:-1]) + f" or {i.keywords[-1]}."
    ),
}


def instruction_sentence(instruction: Instruction) -> str:
    """One instruction in plain English, e.g. "Always end your reply with a question."."""
    return str(_INSTRUCTION_SENTENCES[instruction.kind](instruction))


def render_system_prompt(character: Character) -> str:
    """The character's system prompt: persona line, then one sentence per instruction."""
    return " ".join([character.persona, *(instruction_sentence(i) for i in character.instructions)])


def character(character_id: str) -> Character:
    """Look a character up by id (KeyError names the known ids)."""
    try:
        return CHARACTERS_BY_ID[character_id]
    except KeyError:
        raise KeyError(f"unknown character {character_id!r}; known: {sorted(CHARACTERS_BY_ID)}") from None


def chat_messages(character_: Character, user_message: str) -> tuple[ChatMessage, ...]:
    """System prompt plus one user message: the context a model replies to."""
    return (
        ChatMessage(role="system", content=render_system_prompt(character_)),
        ChatMessage(role="user", content=user_message),
    )


def traffic_opener(rng: random.Random, topic: Topic | None = None) -> tuple[Topic, str]:
    """A traffic user's first message (random topic unless given)."""
    topic = topic or rng.choice(TOPICS)
    return topic, rng.choice(topic.openers)


def traffic_follow_up(rng: random.Random, topic: Topic) -> str:
    """A traffic user's next message in a conversation about ``topic``."""
    return rng.choice(topic.follow_ups)


def held_out_prompts(per_character: int = 8, seed: int = 0) -> tuple[EvalPrompt, ...]:
    """The held-out evaluation set: ``per_character`` prompts per character, deterministic.

    Drawn only from held-out topics and phrasings, so no curated traffic sample can
    contain one of them.
    """
    rng = random.Random(seed)
    pool = [(t, lead, q) for t in _HELD_OUT_TOPICS for lead in _HELD_OUT_LEADS for q in t.openers]
    out: list[EvalPrompt] = []
    for c in CHARACTERS:
        for k, (topic, lead, question) in enumerate(rng.sample(pool, per_character)):
            out.append(EvalPrompt(f"{c.id}/{k}", c.id, topic.id, f"{lead} {question}"))
    return tuple(out)


def is_held_out(user_message: str) -> bool:
    """True when ``user_message`` is phrased like a held-out evaluation prompt."""
    return user_message.startswith(_HELD_OUT_LEADS)
