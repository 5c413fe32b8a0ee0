"""The bounded line reader of `flywheel produce`: lines of any length, split anywhere."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from streams import _lines
from streams._lines import read_lines


def _random_stream(rng: random.Random) -> tuple[bytes, list[bytes]]:
    """A stream of short lines over a small alphabet (with \\r), and its lines without their ends."""
    parts = [
        bytes(rng.choice(b"ab\r") for _ in range(rng.choice([0, 1, 5, 9, 10, 11, 37]))) + rng.choice([b"\n", b"\r\n"])
        for _ in range(rng.randrange(0, 6))
    ]
    if rng.random() < 0.5:  # a last line without a line end
        parts.append(bytes(rng.choice(b"ab\r") for _ in range(rng.randrange(1, 30))))
    lines = [p[:-2] if p.endswith(b"\r\n") else p[:-1] if p.endswith(b"\n") else p for p in parts]
    return b"".join(parts), lines


def test_long_lines_are_cut_with_their_whole_size_and_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    for _ in range(3000):  # every split of a line end between reads comes up
        monkeypatch.setattr(_lines, "_CHUNK_BYTES", rng.choice([1, 2, 3, 7]))
        max_line_bytes = rng.choice([1, 2, 4, 10])
        stream, expected = _random_stream(rng)
        got = list(read_lines(io.BytesIO(stream), max_line_bytes))
        assert [g.number for g in got] == list(range(1, len(expected) + 1)), stream
        for line, whole in zip(got, expected, strict=True):
            assert line.size_bytes == len(whole), (stream, max_line_bytes)
            if len(whole) > max_line_bytes:
                assert not line.whole and line.data == whole[:max_line_bytes]
                assert line.sha256 == hashlib.sha256(whole).hexdigest()
            else:
                assert line.whole and line.data == whole, (stream, max_line_bytes)


def test_lines_in_memory_are_taken_whole() -> None:
    got = list(read_lines([b"a\r\n", b"b" * 100, b"c\n"], max_line_bytes=10))
    assert [(g.number, g.data, g.whole) for g in got] == [(1, b"a", True), (2, b"b" * 100, True), (3, b"c", True)]
