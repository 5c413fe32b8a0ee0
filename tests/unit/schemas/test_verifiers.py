"""Instruction and policy verifiers: text in, pass/fail and reason out."""

from __future__ import annotations

import random

import pytest

from schemas import (
    AddressUserByName,
    EndWithQuestion,
    ExcludeWords,
    IncludeWords,
    MaxSentences,
    MaxWords,
    NoEmoji,
    PersonaKeywords,
    PolicyRuleSet,
    UseEmoji,
    check_instructions,
    check_policy,
)

CASES = [
    (MaxWords(limit=3), "one two three", "one two three four"),
    (MaxSentences(limit=1), "Just one sentence.", "One. Two."),
    (EndWithQuestion(), "How are you? 😀", "I am fine."),
    (IncludeWords(words_required=("arr",)), "Arr, matey!", "Hello, matey!"),
    (ExcludeWords(words_forbidden=("sorry",)), "Never mind.", "Sorry about that."),
    (AddressUserByName(name="Ada"), "Good idea, Ada.", "Good idea."),
    (NoEmoji(), "Plain text.", "Fun 🎉"),
    (UseEmoji(), "Fun 🎉", "Plain text."),
    (PersonaKeywords(keywords=("ship", "sea"), min_count=2), "The ship sails the sea.", "The ship is here."),
]


@pytest.mark.parametrize(("instruction", "good", "bad"), CASES, ids=lambda x: getattr(x, "kind", None))
def test_each_instruction(instruction: object, good: str, bad: str) -> None:
    ok = instruction.check(good)  # type: ignore[attr-defined]
    fail = instruction.check(bad)  # type: ignore[attr-defined]
    assert ok.passed and ok.reason == "ok"
    assert not fail.passed and fail.reason != "ok" and fail.check == instruction.kind  # type: ignore[attr-defined]


def test_report_lists_failures() -> None:
    report = check_instructions("Sorry, no.", [EndWithQuestion(), ExcludeWords(words_forbidden=("sorry",))])
    assert not report.passed
    assert [r.check for r in report.failures] == ["end_with_question", "exclude_words"]
    assert check_instructions("anything", []).passed


@pytest.mark.parametrize(
    ("text", "violates"),
    [
        ("What a lovely day!", False),
        ("You are an idiot.", True),
        ("Write to me at jane.doe@example.com", True),
        ("Call 415-555-0199 tonight", True),
        ("My card is 4111 1111 1111 1111", True),
        ("SSN 123-45-6789", True),
        ("The year 2026 has 365 days", False),
    ],
)
def test_default_policy(text: str, violates: bool) -> None:
    result = check_policy(text)
    assert result.passed is (not violates)
    if violates:
        assert result.reason != "ok"


def test_configurable_rule_set() -> None:
    strict = PolicyRuleSet(
        name="kids", banned_terms=("scary",), personal_data=False, extra_patterns={"url": r"https?://"}
    )
    assert not check_policy("A scary story", strict).passed
    assert not check_policy("see http://x.y", strict).passed
    assert check_policy("mail me: a@b.co", strict).passed


def test_banned_term_pre_check_never_changes_a_verdict() -> None:
    """The cheap pre-check on ASCII text must agree with the case-insensitive regex alone,
    including on the characters the regex folds specially (dotted and dotless i, long s,
    Kelvin sign) and on terms inside longer words."""
    rng = random.Random(7)
    pieces = [
        "you",
        "are",
        "a",
        "LOSER",
        "Idiot",
        "skill",
        "kill",
        "KİLL",
        "kıll",
        "ſhut up",
        "\u212aill",
        "shut",
        "up",
        "Shut  up",
        "hate",
        "you!",
        "dumbbell",
        "dumb.",
        "😀",
        "stupidity",
        "wORTHLESS",
    ]
    policy = PolicyRuleSet(personal_data=False)
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    for text in texts:
        assert check_policy(text, policy).passed is (policy._banned.search(text) is None), text
    many_terms = PolicyRuleSet(banned_terms=(*tuple(f"term{i}" for i in range(40)), "loser"), personal_data=False)
    assert many_terms._ascii_terms is None  # long lists go straight to the regex
    assert not check_policy("what a LOSER", many_terms).passed
