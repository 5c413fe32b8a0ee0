"""Versioned changelog formats of processor state.

Every entry a processor writes carries its state version. Version 2 and later are JSON
arrays, ``[version, field, field, ...]``, in the order the processor's codec lists them:
positional, so no field name is repeated in each of the thousands of session entries a
commit writes (a signals session is ~240 bytes and ~3.6 µs to encode this way, against
~350 bytes and ~4.8 µs for version 1's short keys, measured on one machine). The codec
is the only place that knows those orders; the processors see dataclasses.

Version 1 is the format from before state had types: JSON objects with one- to
four-letter keys (curation's exact-duplicate entries: a bare number). Every codec still
reads it; ``ProcessorBase.restore`` marks such entries changed, so the next commit
rewrites them in the current version.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, ClassVar

from schemas import StreamError


class StateVersionError(StreamError):
    """A changelog entry was written in a state version this build cannot read (a newer
    build wrote it, and this one was deployed over it).

    Attributes:
        key: the entry's key.
        version: the version it was written in.
        supported: the versions this build reads.
    """

    def __init__(self, key: str, version: object, supported: Collection[int]) -> None:
        self.key = key
        self.version = version
        self.supported = tuple(sorted(supported))
        super().__init__(
            f"state entry {key!r} has state version {version!r}; this build reads versions "
            f"{list(self.supported)}: deploy the build that wrote it (or a newer one)"
        )


class VersionedCodec:
    """Shared part of the processors' codecs: which version they write and read."""

    version: ClassVar[int]
    """The state version this codec writes."""
    reads: ClassVar[frozenset[int]]
    """The state versions it reads."""

    def is_current(self, raw: bytes) -> bool:
        return raw.startswith(b"[%d," % self.version)

    def read(self, key: str, raw: bytes) -> tuple[int, Any]:
        """(version, document) of one entry; StateVersionError for a version it cannot read."""
        doc = json.loads(raw)
        version = doc[0] if type(doc) is list else 1
        if version not in self.reads:
            raise StateVersionError(key, version, self.reads)
        return version, doc


def int_keys(doc: dict[str, Any]) -> dict[int, Any]:
    """A JSON object keyed by turn numbers back into an int-keyed dict (JSON keys are strings)."""
    return {int(k): v for k, v in doc.items()}
