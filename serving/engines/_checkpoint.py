"""Checks before any checkpoint is loaded: safetensors only, and every file's sha256
must match the manifest that published it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from schemas import CheckpointManifest
from serving._errors import ModelLoadError

# Formats that can execute code when loaded (pickle); refused outright.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checkpoint_dir(path: Path, version: str, manifest: CheckpointManifest | None) -> None:
    """Raise ModelLoadError unless ``path`` holds safetensors weights matching ``manifest``.

    Without a manifest (a local directory served by hand) only the pickle check applies.
    """
    if not path.is_dir():
        raise ModelLoadError(f"checkpoint {version}: {path} is not a directory", version=version)
    pickles = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"checkpoint {version}: refusing pickle files {pickles}; publish safetensors only", version=version
        )
    if not any(path.rglob("*.safetensors")):
        raise ModelLoadError(f"checkpoint {version}: no *.safetensors weights in {path}", version=version)
    if manifest is None:
        return
    if not manifest.files:
        raise ModelLoadError(f"checkpoint {version}: manifest lists no files to verify", version=version)
    root = path.resolve()
    for digest in manifest.files:
        file = (path / digest.path).resolve()
        if not file.is_relative_to(root):
            raise ModelLoadError(
                f"checkpoint {version}: manifest path {digest.path!r} escapes the checkpoint", version=version
            )
        if not file.is_file():
            raise ModelLoadError(f"checkpoint {version}: {digest.path} is missing", version=version)
        actual = sha256_file(file)
        if actual != digest.sha256:
            raise ModelLoadError(
                f"checkpoint {version}: sha256 of {digest.path} is {actual[:12]}…, manifest says {digest.sha256[:12]}…",
                version=version,
            )
