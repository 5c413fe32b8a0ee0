"""Verifiable character instructions: what a character promises, and the check of it.

One implementation serves the signals processor, curation, the offline gate, GRPO's
reward and the canary's guardrails: text in, pass/fail and a reason out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from pydantic import Field, TypeAdapter

from schemas._base import Message

_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
# Emoji blocks: pictographs, symbols, dingbats, flags, supplemental symbols.
EMOJI = re.compile("[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U0001f900-\U0001f9ff]")


class CheckResult(NamedTuple):
    """Outcome of one check. ``reason`` says what failed (or "ok").

    A tuple: stream processors run checks on every reply, and tuples build several times
    faster than frozen dataclasses.
    """

    passed: bool
    reason: str
    check: str

    def __bool__(self) -> bool:
        return self.passed


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def count_sentences(text: str) -> int:
    stripped = text.strip()
    if not stripped:
        return 0
    return max(1, len(_SENTENCE_END.findall(stripped + " ")))


class _Instruction(Message):
    if TYPE_CHECKING:  # each subclass declares its own ``kind`` literal (the union's discriminator)
        kind: str

    def check(self, text: str) -> CheckResult:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _passed(self) -> CheckResult:
        return CheckResult(True, "ok", self.kind)

    def _failed(self, reason: str) -> CheckResult:
        return CheckResult(False, reason, self.kind)


class MaxWords(_Instruction):
    """Reply has at most ``limit`` words."""

    kind: Literal["max_words"] = "max_words"
    limit: int = Field(gt=0)

    def check(self, text: str) -> CheckResult:
        n = len(_WORD.findall(text))
        return self._passed() if n <= self.limit else self._failed(f"{n} words > limit {self.limit}")


class MaxSentences(_Instruction):
    """Reply has at most ``limit`` sentences."""

    kind: Literal["max_sentences"] = "max_sentences"
    limit: int = Field(gt=0)

    def check(self, text: str) -> CheckResult:
        n = count_sentences(text)
        return self._passed() if n <= self.limit else self._failed(f"{n} sentences > limit {self.limit}")


class EndWithQuestion(_Instruction):
    """Reply ends by asking the user something."""

    kind: Literal["end_with_question"] = "end_with_question"

    def check(self, text: str) -> CheckResult:
        # "?" is no emoji, so a text already ending with it needs no emoji removed.
        if text.rstrip().endswith("?") or EMOJI.sub("", text).rstrip().endswith("?"):
            return self._passed()
        return self._failed("does not end with a question")


class IncludeWords(_Instruction):
    """Reply contains every one of ``words_required`` (case-insensitive, whole words)."""

    kind: Literal["include_words"] = "include_words"
    words_required: tuple[str, ...] = Field(min_length=1)

    def check(self, text: str) -> CheckResult:
        present = set(words(text))
        missing = [w for w in self.words_required if w.lower() not in present]
        return self._failed(f"missing required words {missing}") if missing else self._passed()


class ExcludeWords(_Instruction):
    """Reply contains none of ``words_forbidden``."""

    kind: Literal["exclude_words"] = "exclude_words"
    words_forbidden: tuple[str, ...] = Field(min_length=1)

    def check(self, text: str) -> CheckResult:
        present = set(words(text))
        found = [w for w in self.words_forbidden if w.lower() in present]
        return self._failed(f"contains forbidden words {found}") if found else self._passed()


class AddressUserByName(_Instruction):
    """Reply addresses the user by ``name``."""

    kind: Literal["address_user_by_name"] = "address_user_by_name"
    name: str = Field(min_length=1)

    def check(self, text: str) -> CheckResult:
        if self.name.lower() in words(text):
            return self._passed()
        return self._failed(f"does not address the user as {self.name!r}")


class NoEmoji(_Instruction):
    """Reply uses no emoji."""

    kind: Literal["no_emoji"] = "no_emoji"

    def check(self, text: str) -> CheckResult:
        return self._failed("uses emoji") if EMOJI.search(text) else self._passed()


class UseEmoji(_Instruction):
    """Reply uses at least one emoji."""

    kind: Literal["use_emoji"] = "use_emoji"

    def check(self, text: str) -> CheckResult:
        return self._passed() if EMOJI.search(text) else self._failed("uses no emoji")


class PersonaKeywords(_Instruction):
    """Reply stays in persona: at least ``min_count`` of ``keywords`` appear."""

    kind: Literal["persona_keywords"] = "persona_keywords"
    keywords: tuple[str, ...] = Field(min_length=1)
    min_count: int = Field(default=1, gt=0)

    def check(self, text: str) -> CheckResult:
        present = set(words(text))
        hits = sum(1 for k in self.keywords if k.lower() in present)
        if hits >= self.min_count:
            return self._passed()
        return self._failed(f"{hits} persona keywords < {self.min_count}")


Instruction = Annotated[
    MaxWords
    | MaxSentences
    | EndWithQuestion
    | IncludeWords
    | ExcludeWords
    | AddressUserByName
    | NoEmoji
    | UseEmoji
    | PersonaKeywords,
    Field(discriminator="kind"),
]
"""One verifiable character instruction (discriminated on ``kind``)."""

instruction_adapter: TypeAdapter[Instruction] = TypeAdapter(Instruction)


@dataclass(frozen=True)
class InstructionReport:
    """All instruction checks of one reply."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


def check_instructions(text: str, instructions: tuple[Instruction, ...] | list[Instruction]) -> InstructionReport:
    """Run every instruction's check on ``text``. No instructions means pass."""
    return InstructionReport(tuple(i.check(text) for i in instructions))


def follows_instructions(text: str, instructions: tuple[Instruction, ...] | list[Instruction]) -> bool:
    """``check_instructions(text, instructions).passed`` without the report (stream processors'
    hot path): stops at the first failed check."""
    return all(instruction.check(text).passed for instruction in instructions)
