"""PII redaction measured on a labelled set (tests/unit/streams/pii_cases.py)."""

from __future__ import annotations

from collections import Counter

from pii_cases import labelled_examples

from streams.processors import find_pii, redact
from streams.processors.pii import luhn_ok


def test_redaction_precision_and_recall_on_labelled_set() -> None:
    examples = labelled_examples()
    assert len(examples) >= 200
    tp = fp = fn = 0
    per_kind: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for text, labels in examples:
        gold = []
        for value, kind in labels:
            start = text.find(value)
            assert start >= 0, (text, value)
            gold.append((start, start + len(value), kind))
        spans = find_pii(text)
        for s in spans:
            if any(s.start < e and b < s.end for b, e, _ in gold):
                tp += 1
            else:
                fp += 1
        for b, e, kind in gold:
            per_kind[kind] += 1
            if not any(s.start < e and b < s.end for s in spans):
                fn += 1
                missed[kind] += 1
    precision = tp / (tp + fp)
    recall = (sum(per_kind.values()) - fn) / sum(per_kind.values())
    print(
        f"\nPII redaction on {len(examples)} labelled examples ({sum(per_kind.values())} PII spans): "
        f"precision {precision:.3f}, recall {recall:.3f}; per kind {dict(per_kind)}; missed {dict(missed)}"
    )
    assert recall >= 0.95
    assert precision >= 0.9


def test_redact_replaces_spans_with_kind_tags() -> None:
    text, kinds = redact("mail jane@site.org, card 4111 1111 1111 1111, from 10.0.0.1")
    assert text == "mail [EMAIL], card [CARD], from [IP]" and kinds == ["EMAIL", "CARD", "IP"]


def test_card_needs_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert [s.kind for s in find_pii("card 4111 1111 1111 1112")] != ["CARD"]
