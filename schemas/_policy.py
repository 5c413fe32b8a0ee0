"""Content policy: rule sets that flag a reply as a violation, with the reason.

Rules are data (so operators can configure them); the checks are pure functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from schemas._instructions import CheckResult

# Personal data a model must never emit. Deliberately conservative patterns; the
# redaction in curation is more thorough, this is the guardrail check.
_PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone": re.compile(r"(?<!\d)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\d)"),
    "card_number": re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)"),
    "national_id": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
}
_has_digit = re.compile(r"\d").search

DEFAULT_BANNED_TERMS: tuple[str, ...] = (
    "idiot",
    "stupid",
    "hate you",
    "kill",
    "shut up",
    "loser",
    "worthless",
    "dumb",
)


@dataclass(frozen=True)
class PolicyRuleSet:
    """A configurable content policy.

    Attributes:
        name: shown in reasons and metrics.
        banned_terms: words or phrases (case-insensitive, whole words) a reply must not contain.
        personal_data: flag emails, phone numbers, card and national-ID numbers in replies.
    """

    name: str = "default"
    banned_terms: tuple[str, ...] = DEFAULT_BANNED_TERMS
    personal_data: bool = True
    extra_patterns: dict[str, str] = field(default_factory=dict)

    @cached_property
    def _banned(self) -> re.Pattern[str] | None:
        if not self.banned_terms:
            return None
        alternatives = "|".join(re.escape(t) for t in sorted(self.banned_terms, key=len, reverse=True))
        return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)

    @cached_property
    def _ascii_terms(self) -> tuple[str, ...] | None:
        """The banned terms in lower case, when a cheap pre-check is exact: all terms ASCII
        and few (each costs a substring search)."""
        terms = tuple(t.lower() for t in self.banned_terms)
        return terms if len(terms) <= 32 and all(t.isascii() for t in terms) else None

    @cached_property
    def _ok(self) -> CheckResult:
        return CheckResult(True, "ok", f"policy:{self.name}")

    @cached_property
    def _extra(self) -> dict[str, re.Pattern[str]]:
        return {k: re.compile(v, re.IGNORECASE) for k, v in self.extra_patterns.items()}


DEFAULT_POLICY = PolicyRuleSet()


def _may_contain(text: str, ascii_terms: tuple[str, ...] | None) -> bool:
    """False only when ``text`` cannot contain a banned term: in ASCII text a case-insensitive
    match of an ASCII term is a substring of the lower-cased text. A few substring searches
    cost half as much as the case-insensitive regex, which runs on every reply."""
    if ascii_terms is None or not text.isascii():
        return True
    lowered = text.lower()
    return any(term in lowered for term in ascii_terms)


def check_policy(text: str, policy: PolicyRuleSet = DEFAULT_POLICY) -> CheckResult:
    """Return a failing CheckResult (a violation) with the first rule broken, else pass."""
    banned = policy._banned
    if banned is not None and _may_contain(text, policy._ascii_terms) and (m := banned.search(text)):
        return CheckResult(False, f"banned term {m.group(0).lower()!r}", f"policy:{policy.name}:banned_term")
    # Every personal-data pattern needs an "@" or a digit; most replies have neither, and
    # this check is a tenth of the cost of running the four patterns.
    if policy.personal_data and ("@" in text or _has_digit(text)):
        for kind, pattern in _PII_PATTERNS.items():
            if pattern.search(text):
                return CheckResult(False, f"personal data ({kind}) in reply", f"policy:{policy.name}:personal_data")
    for kind, pattern in policy._extra.items():
        if pattern.search(text):
            return CheckResult(False, f"matches rule {kind!r}", f"policy:{policy.name}:{kind}")
    return policy._ok
