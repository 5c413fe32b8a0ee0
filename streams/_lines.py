"""Lines of a byte stream with a bound on what is held in memory: a line of any length
(a binary file given by mistake has lines of gigabytes) costs at most ``max_line_bytes``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

_CHUNK_BYTES = 1 << 20


class Line(NamedTuple):
    """One line, numbered from 1, without its line end.

    ``data`` is the whole line, or its first ``max_line_bytes`` bytes when it is longer
    (``whole`` false); ``size_bytes`` and ``sha256`` (hex; None when whole, compute it
    from ``data``) describe the whole line either way.
    """

    number: int
    data: bytes
    size_bytes: int
    sha256: str | None

    @property
    def whole(self) -> bool:
        return self.sha256 is None


@runtime_checkable
class _Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def _strip_end(data: bytes) -> bytes:
    """Without its line end, ``\n`` or ``\r\n`` (a lone ``\r`` at the end of the stream is content)."""
    if not data.endswith(b"\n"):
        return data
    return data[:-2] if data.endswith(b"\r\n") else data[:-1]


def read_lines(source: Iterable[bytes] | _Readable, max_line_bytes: int) -> Iterator[Line]:
    """The lines of ``source``: a binary stream (read with ``readline``, bounded) or an
    iterable of lines already in memory (taken whole)."""
    if not isinstance(source, _Readable):
        for number, raw in enumerate(source, start=1):
            data = _strip_end(raw)
            yield Line(number, data, len(data), None)
        return
    readline = source.readline
    number = 0
    while head := readline(max_line_bytes + 1):
        number += 1
        if head.endswith(b"\n") or len(head) <= max_line_bytes:
            data = _strip_end(head)
            yield Line(number, data, len(data), None)
            continue
        size, digest = _rest_of_line(head, readline)
        if size <= max_line_bytes:  # the bound fell inside its line end
            yield Line(number, head[:size], size, None)
        else:
            yield Line(number, head[:max_line_bytes], size, digest)


def _rest_of_line(head: bytes, readline: Callable[[int], bytes]) -> tuple[int, str]:
    """Size and sha256 of a line that starts with ``head``, read to its end in chunks.

    The last byte of each chunk is hashed with the next one, so that a ``\r\n`` split
    between two chunks is still recognised as the line end."""
    digest = hashlib.sha256(head[:-1])
    size = len(head) - 1
    held = head[-1:]
    while chunk := readline(_CHUNK_BYTES):
        data = held + chunk
        if chunk.endswith(b"\n"):
            held = _strip_end(data)
            break
        digest.update(data[:-1])
        size += len(data) - 1
        held = data[-1:]
    digest.update(held)
    return size + len(held), digest.hexdigest()
