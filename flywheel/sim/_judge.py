"""How a simulated user reads a reply: verifiable features, then decisions.

Part of it uses the platform's own verifiers (`schemas.check_instructions`,
`schemas.check_policy`); the rest the platform cannot check: the reply's length and emoji
against the user's taste (visible in how they write), a question back about the user's
topic rather than a stock "?", and picking up what the user said earlier.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from flywheel.sim._population import Preferences
from schemas import (
    DEFAULT_POLICY,
    EMOJI,
    FeedbackKind,
    Instruction,
    PolicyRuleSet,
    check_instructions,
    check_policy,
    words,
)

_DEGENERATE_PENALTY = 2.0


@dataclass(frozen=True)
class ReplyJudgement:
    """What a user notices in one reply."""

    words: int
    instructions: int
    instructions_passed: int
    violation: bool
    asks_back: bool
    question_on_topic: bool
    recalls_earlier: bool
    on_topic: bool
    has_emoji: bool
    degenerate: bool

    @property
    def follows_instructions(self) -> bool:
        return self.instructions_passed == self.instructions

    @property
    def pass_fraction(self) -> float:
        return self.instructions_passed / self.instructions if self.instructions else 1.0


def _degenerate(tokens: list[str]) -> bool:
    """Empty, or one word making up most of a longer reply (a stuck decoder)."""
    if not tokens:
        return True
    if len(tokens) < 6:
        return False
    return Counter(tokens).most_common(1)[0][1] / len(tokens) > 0.4


def _content_words(text: str) -> set[str]:
    return {w for w in words(text) if len(w) >= 5}


def _question_on_topic(text: str, keywords: set[str]) -> bool:
    """A question sentence of the reply names the user's topic."""
    for sentence in text.split("?")[:-1]:
        tail = sentence.replace("!", ".").split(".")[-1]
        if keywords.intersection(words(tail)):
            return True
    return False


def judge_reply(
    text: str,
    instructions: tuple[Instruction, ...],
    topic_keywords: tuple[str, ...],
    policy: PolicyRuleSet = DEFAULT_POLICY,
    earlier: tuple[str, ...] = (),
) -> ReplyJudgement:
    """What a user notices in ``text``; ``earlier`` are their own earlier messages of the
    conversation (not the one this reply answers)."""
    tokens = words(text)
    report = check_instructions(text, instructions)
    keywords = {k.lower() for k in topic_keywords}
    remembered = set().union(*map(_content_words, earlier)) - keywords if earlier else set()
    return ReplyJudgement(
        words=len(tokens),
        instructions=len(report.results),
        instructions_passed=sum(1 for r in report.results if r.passed),
        violation=not check_policy(text, policy).passed,
        asks_back="?" in text,
        question_on_topic=_question_on_topic(text, keywords),
        recalls_earlier=bool(remembered.intersection(tokens)),
        on_topic=bool(keywords.intersection(tokens)),
        has_emoji=bool(EMOJI.search(text)),
        degenerate=_degenerate(tokens),
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def reply_utility(j: ReplyJudgement, prefs: Preferences) -> float:
    """Logit of the chance to continue after this reply, for a user with ``prefs``.

    Following every instruction earns the full instruction weight; a partial pass earns
    little (one broken promise is what users notice); a violation costs the most.
    """
    u = prefs.base
    u += prefs.instruction_weight * (1.0 if j.follows_instructions else j.pass_fraction - 0.5)
    if j.violation:
        u -= prefs.violation_aversion
    if j.asks_back:
        # A question about the user's topic invites an answer; a stock "?" hardly does.
        u += prefs.question_affinity * (1.0 if j.question_on_topic else 0.25)
    if j.recalls_earlier:
        u += prefs.recall_weight
    u += prefs.topic_weight if j.on_topic else -prefs.topic_weight
    if j.words:
        off = abs(math.log(j.words / prefs.preferred_words)) / prefs.length_tolerance
        u -= prefs.length_weight * min(off * off, 3.0)
    if j.has_emoji:
        u += prefs.emoji_affinity
    if j.degenerate:
        u -= _DEGENERATE_PENALTY
    return u


def continue_probability(j: ReplyJudgement, prefs: Preferences) -> float:
    return _sigmoid(reply_utility(j, prefs))


@dataclass(frozen=True)
class Reaction:
    """What the user does after reading a reply."""

    p_continue: float
    continues: bool  # sends the next message
    regenerate: bool  # asks for another reply to the same turn instead
    feedback: tuple[FeedbackKind, ...]


def react(j: ReplyJudgement, prefs: Preferences, rng: random.Random, may_regenerate: bool) -> Reaction:
    """Decide continue / regenerate / feedback. Every draw happens in a fixed order, so one
    ``rng`` state always gives the same reaction."""
    p = continue_probability(j, prefs)
    feedback: list[FeedbackKind] = []
    if j.violation and rng.random() < prefs.report_rate:
        feedback.append(FeedbackKind.REPORT)
    continues = rng.random() < p
    regen_draw = rng.random()
    thumb_draw = rng.random()
    regenerate = (not continues) and may_regenerate and regen_draw < prefs.regenerate_rate
    if regenerate:
        feedback.append(FeedbackKind.REGENERATE)
    elif continues and j.follows_instructions and thumb_draw < prefs.feedback_rate * p:
        feedback.append(FeedbackKind.THUMBS_UP)
    elif not continues and thumb_draw < prefs.feedback_rate:
        feedback.append(FeedbackKind.THUMBS_DOWN)
    return Reaction(p, continues, regenerate, tuple(feedback))
