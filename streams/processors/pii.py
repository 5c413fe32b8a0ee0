"""PII redaction for training data: emails, phone numbers, card numbers (Luhn-checked),
IP addresses, street addresses, national ids. Matches are replaced by ``[KIND]``.

More thorough than the content-policy guardrail in ``schemas`` (which only flags a reply);
recall matters more than precision here: a missed address leaks into training data, an
over-redacted order number costs little. Precision and recall are measured on a labelled
set in the tests.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class PiiSpan(NamedTuple):
    start: int
    end: int
    kind: str


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])")
_NINO = re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
# Ids announced as such: "passport number X1234567", "SIN: 046 454 286", "my ID is 12345678Z".
_ID_CONTEXT = re.compile(
    r"(?i)\b(?:passport|national (?:id|insurance)|id card|identity card|id|ssn|sin|social security|tax id|"
    r"personalausweis|dni|nif|aadhaar|bsn|tfn|nric|pesel|cpf)(?:\s+(?:number|no\.?|num|#))?\s*(?:is|:|#)?\s*"
    r"(?P<id>(?=[A-Z0-9 -]*\d)[A-Z0-9][A-Z0-9 -]{4,17}[A-Z0-9])\b"
)
_IPV4 = re.compile(
    r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![\d.])"
)
_IPV6 = re.compile(
    r"(?<![:\w])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|"
    r"(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?|"
    r"::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![:\w])"
)
_PHONE = re.compile(r"(?<![\w+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,15}(?:[ .-]\d{1,8}){0,5}(?![\w])")
_DATE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$")
_STREET_TYPES = (
    r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
    r"circle|cir|parkway|pkwy|highway|hwy|square|sq|close|crescent|row|strasse|straße|gardens|"
    r"hill|mews|walk|grove|trail|alley|loop"
)
_STOP = (
    r"the|a|an|my|your|our|his|her|their|this|that|these|those|to|on|in|at|of|for|and|or|down|up|"
    r"across|along|from|by|with|over|under|around|miles?|km|kilometers?|blocks?|minutes?|hours?|times?|"
    r"people|dollars?|steps|feet|meters?|years?|days?|weeks?"
)
_NAME = rf"(?!(?i:{_STOP})\b)[A-Za-z][A-Za-z'.-]*"
_ADDRESS = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?,?\s+(?:{_NAME}\s+){{1,4}}(?i:{_STREET_TYPES})\b\.?"
    rf"(?:,?\s+(?i:apt|apartment|suite|unit|flat|#)\.?\s*#?\w+)?"
    rf"(?:,\s*[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+)?)?(?:,?\s+[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?)?"
)
_PO_BOX = re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d+\b")
_POSTCODE_UK = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}\b")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone_ok(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15 or _DATE.match(text):
        return False
    groups = len(re.findall(r"\d+", text))
    # A bare run of digits is an order number more often than a phone, unless it is long.
    return text.startswith("+") or "(" in text or groups >= 2 or digits >= 10


def find_pii(text: str) -> list[PiiSpan]:
    """Non-overlapping PII spans, earlier kinds in this order winning overlaps:
    email, card, national id, IP, address, phone."""
    spans: list[PiiSpan] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, kind: str) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        spans.append(PiiSpan(start, end, kind))

    for m in _EMAIL.finditer(text):
        add(m.start(), m.end(), "EMAIL")
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            add(m.start(), m.end(), "CARD")
    for pattern in (_SSN, _NINO):
        for m in pattern.finditer(text):
            add(m.start(), m.end(), "NATIONAL_ID")
    for m in _ID_CONTEXT.finditer(text):
        add(m.start("id"), m.end("id"), "NATIONAL_ID")
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            if pattern is _IPV6 and m.group().count(":") < 2:
                continue
            add(m.start(), m.end(), "IP")
    for pattern in (_ADDRESS, _PO_BOX, _POSTCODE_UK):
        for m in pattern.finditer(text):
            add(m.start(), m.end(), "ADDRESS")
    for m in _PHONE.finditer(text):
        if _phone_ok(m.group()):
            add(m.start(), m.end(), "PHONE")
    spans.sort()
    return spans


def redact(text: str) -> tuple[str, list[str]]:
    """``text`` with every PII span replaced by ``[KIND]``; also the kinds found."""
    spans = find_pii(text)
    if not spans:
        return text, []
    parts: list[str] = []
    pos = 0
    for span in spans:
        parts.append(text[pos : span.start])
        parts.append(f"[{span.kind}]")
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts), [s.kind for s in spans]
