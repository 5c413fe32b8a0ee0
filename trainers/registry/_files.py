"""File-level safety: digests, durable writes, names that cannot escape a folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

# Formats that execute code when loaded: never accepted, whatever the manifest says.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    # The rename of a directory is durable only once its parent's entry is on disk.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unsafe_name_reason(name: str) -> str | None:
    """Why a manifest file name is refused, or None when it is a plain relative path."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or "\\" in name or any(part in {"", ".", ".."} for part in p.parts):
        return f"path {name!r} is absolute or leaves the checkpoint folder"
    if p.suffix.lower() in PICKLE_SUFFIXES:
        return f"file {name!r} is a pickle-based format ({p.suffix}); only safetensors and JSON/text files are accepted"
    return None
