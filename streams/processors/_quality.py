"""Quality filters, near-duplicate signatures and style-artefact statistics of sample text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import numpy as np

from schemas import EMOJI, words

_RUN = re.compile(r"(.)\1{9,}")
_SPACE = re.compile(r"\s+")
STOCK_PHRASES = (
    "as an ai",
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "great question",
    "i understand",
    "happy to help",
    "let me know if",
    "feel free to",
    "absolutely!",
)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


def exact_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:24]


def quality_problem(
    text: str, min_words: int, max_words: int, min_ascii_letter_share: float, min_distinct_word_share: float
) -> str | None:
    """The first quality rule ``text`` breaks, or None."""
    ws = words(text)
    if len(ws) < min_words:
        return "too_short"
    if len(ws) > max_words:
        return "too_long"
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < min_ascii_letter_share:
        return "language"
    if _RUN.search(text) or (len(ws) >= 6 and len(set(ws)) / len(ws) < min_distinct_word_share):
        return "repetition"
    return None


def minhash_signature(text: str, num_perm: int, seed: int = 1) -> list[int]:
    """MinHash of word 3-shingles (character 5-grams for very short texts)."""
    ws = words(text)
    shingles = (
        {" ".join(ws[i : i + 3]) for i in range(max(1, len(ws) - 2))}
        if len(ws) >= 3
        else {normalise(text)[i : i + 5] for i in range(max(1, len(text) - 4))}
    )
    from datasketch import MinHash

    mh = MinHash(num_perm=num_perm, seed=seed)
    mh.update_batch([s.encode() for s in shingles])
    return [int(v) for v in mh.hashvalues]


class LshIndex:
    """Banded LSH over MinHash signatures; rebuilt from persisted signatures on restore."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        self._buckets: dict[tuple[int, bytes], set[str]] = {}

    def _keys(self, sig: list[int]) -> list[tuple[int, bytes]]:
        arr = np.asarray(sig, dtype=np.uint64)
        return [(b, arr[b * self.rows : (b + 1) * self.rows].tobytes()) for b in range(self.bands)]

    def query(self, sig: list[int], threshold: float, signature_of: Callable[[str], list[int] | None]) -> str | None:
        """Id of an indexed signature (``signature_of(id)``) whose estimated Jaccard
        similarity is >= threshold."""
        seen: set[str] = set()
        arr = np.asarray(sig, dtype=np.uint64)
        for key in self._keys(sig):
            for sid in self._buckets.get(key, ()):
                if sid in seen:
                    continue
                seen.add(sid)
                other = signature_of(sid)
                if other is not None and float(np.mean(arr == np.asarray(other, dtype=np.uint64))) >= threshold:
                    return sid
        return None

    def add(self, sid: str, sig: list[int]) -> None:
        for key in self._keys(sig):
            self._buckets.setdefault(key, set()).add(sid)

    def remove(self, sid: str, sig: list[int]) -> None:
        for key in self._keys(sig):
            bucket = self._buckets.get(key)
            if bucket:
                bucket.discard(sid)


def pair_problem(chosen: str, rejected: str, max_length_ratio: float, max_emoji_difference: int) -> str | None:
    """Why two replies make no preference pair (the chosen one being clean), or None:
    the same text, word counts too far apart, emoji counts too far apart."""
    if exact_hash(chosen) == exact_hash(rejected):
        return "pair_quality"
    lc, lr = max(1, len(words(chosen))), max(1, len(words(rejected)))
    if max(lc, lr) / min(lc, lr) > max_length_ratio:
        return "pair_length_ratio"
    if abs(len(EMOJI.findall(chosen)) - len(EMOJI.findall(rejected))) > max_emoji_difference:
        return "pair_emoji_difference"
    return None


def style_of(text: str) -> dict[str, float]:
    low = text.lower()
    return {
        "words": float(len(words(text))),
        "emoji": float(len(EMOJI.findall(text))),
        "questions": float(text.count("?")),
        "stock_phrases": float(sum(p in low for p in STOCK_PHRASES)),
    }
