"""The checkpoint registry: immutable, checksummed, atomically published versions.

Layout: ``<root>/<model>/<version>/manifest.json`` plus the files it lists. A version
appears only by a directory rename of a complete, fsynced temp folder, so a reader
never sees half a checkpoint; every load re-verifies names and checksums, so a
tampered or truncated one is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client import Counter
from pydantic import ValidationError

from schemas import CheckpointManifest, FileDigest, TrainerError, check_name
from trainers.registry._files import PICKLE_SUFFIXES, fsync_dir, fsync_file, sha256_file, unsafe_name_reason
from trainers.registry.registry_config import RegistryConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"

registry_refusals_total = Counter(
    "flywheel_trainers_registry_refusals_total",
    "Checkpoints refused on publish or load, by reason.",
    ["reason"],
)


class CheckpointRefusedError(TrainerError):
    """A checkpoint failed verification (checksum, pickle file, unsafe path, missing file).

    Attributes:
        path: the checkpoint folder.
        reason: what was wrong, in words an operator can act on.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"checkpoint {path} refused: {reason}")


class VersionConflictError(TrainerError):
    """A different job already published this version (versions are immutable)."""


def version_for_job(job_id: str, prefix: str = "v") -> str:
    """Deterministic version id of a job: a retry of the job yields the same version."""
    return f"{prefix}-{hashlib.sha256(job_id.encode()).hexdigest()[:16]}"


def lora_base_of(start: CheckpointManifest, trained: Literal["full", "lora"]) -> str | None:
    """``lora_base`` of a policy trained from ``start``: None unless it is an adapter; a
    continued adapter keeps its lineage's base, a fresh one applies to its full start."""
    if trained != "lora":
        return None
    return start.lora_base if start.kind == "lora" else start.version


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: its folder (load it with ``from_pretrained(path)``) and manifest."""

    path: Path
    manifest: CheckpointManifest


class CheckpointRegistry:
    """Publish and open checkpoints under ``settings.root``."""

    def __init__(self, settings: RegistryConfig | None = None) -> None:
        self.settings = settings or RegistryConfig()
        self.root = self.settings.root

    def path(self, model: str, version: str) -> Path:
        return self.root / check_name(model, "model") / check_name(version, "version")

    # -- publish -----------------------------------------------------------------
    def publish(self, source: Path, manifest: CheckpointManifest) -> Checkpoint:
        """Copy ``source``'s files into ``<model>/<version>`` atomically, with checksums.

        ``manifest.files`` is filled in here. Idempotent: when the version exists and was
        published by the same job, the existing checkpoint is returned unchanged; a
        different job gets VersionConflictError.
        """
        final = self.path(manifest.model, manifest.version)
        existing = self._existing(final, manifest)
        if existing is not None:
            return existing
        names = self._source_files(source)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{_TMP_PREFIX}{manifest.version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            digests = []
            for name in names:
                dst = tmp / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, dst)
                fsync_file(dst)
                digests.append(FileDigest(path=name, sha256=sha256_file(dst), size=dst.stat().st_size))
            full = manifest.model_copy(update={"files": tuple(digests), "uri": str(final)})
            CheckpointManifest.model_validate(full.model_dump())  # re-validate the filled-in copy
            (tmp / MANIFEST).write_bytes(full.model_dump_json(indent=2).encode())
            fsync_file(tmp / MANIFEST)
            fsync_dir(tmp)
            try:
                os.rename(tmp, final)  # atomic; fails if another publisher got there first
            except OSError:
                if not final.exists():
                    raise
                existing = self._existing(final, manifest)
                if existing is None:  # pragma: no cover - _existing raises or returns
                    raise
                return existing
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("published %s/%s (%s, %d files)", manifest.model, manifest.version, manifest.status, len(names))
        return Checkpoint(final, full)

    def _existing(self, final: Path, manifest: CheckpointManifest) -> Checkpoint | None:
        if not final.exists():
            return None
        current = self.open(manifest.model, manifest.version)
        if current.manifest.job_id != manifest.job_id or manifest.job_id is None:
            raise VersionConflictError(
                f"{manifest.model}/{manifest.version} already exists from job {current.manifest.job_id!r}; "
                "versions are immutable: publish under a new version"
            )
        return current

    @staticmethod
    def _source_files(source: Path) -> list[str]:
        names: list[str] = []
        for p in sorted(source.rglob("*")):
            if p.is_symlink():
                raise CheckpointRefusedError(source, f"{p.name} is a symbolic link")
            if not p.is_file():
                continue
            name = p.relative_to(source).as_posix()
            if name == MANIFEST:
                continue
            reason = unsafe_name_reason(name)
            if reason:
                registry_refusals_total.labels("publish").inc()
                raise CheckpointRefusedError(source, reason)
            names.append(name)
        if not names:
            raise CheckpointRefusedError(source, "no files to publish")
        return names

    # -- read ----------------------------------------------------------------------
    def exists(self, model: str, version: str) -> bool:
        """True once the version has been published (it may still fail verification)."""
        return (self.path(model, version) / MANIFEST).is_file()

    def open(self, model: str, version: str) -> Checkpoint:
        """Verify and return a checkpoint; raise CheckpointRefusedError if anything is off."""
        folder = self.path(model, version)
        manifest = self.read_manifest(folder)
        listed = set()
        for f in manifest.files:
            reason = unsafe_name_reason(f.path)
            if reason:
                self._refuse(folder, "unsafe_name", reason)
            target = folder / f.path
            if not target.resolve().is_relative_to(folder.resolve()):
                self._refuse(folder, "unsafe_name", f"path {f.path!r} leaves the checkpoint folder")
            if not target.is_file():
                self._refuse(folder, "missing_file", f"file {f.path!r} is missing")
            if target.stat().st_size != f.size or sha256_file(target) != f.sha256:
                self._refuse(folder, "checksum", f"checksum mismatch for {f.path!r}")
            listed.add(f.path)
        for p in folder.rglob("*"):
            name = p.relative_to(folder).as_posix()
            if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES:
                self._refuse(folder, "pickle", f"file {name!r} is a pickle-based format; refusing to load")
            if p.is_file() and name != MANIFEST and name not in listed:
                self._refuse(folder, "unlisted_file", f"file {name!r} is not in the manifest")
        return Checkpoint(folder, manifest)

    def read_manifest(self, folder: Path) -> CheckpointManifest:
        try:
            return CheckpointManifest.model_validate_json((folder / MANIFEST).read_bytes())
        except FileNotFoundError:
            self._refuse(folder, "missing_file", "no manifest.json (not a published checkpoint)")
        except ValidationError as exc:
            self._refuse(folder, "manifest", f"manifest.json is invalid: {exc.errors(include_url=False)[0]['msg']}")
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _refuse(folder: Path, kind: str, reason: str) -> None:
        registry_refusals_total.labels(kind).inc()
        raise CheckpointRefusedError(folder, reason)

    def list(self, model: str | None = None) -> list[CheckpointManifest]:
        """Manifests of every version (of ``model``, or of all models), oldest first.
        Unreadable manifests are skipped (``open`` reports why)."""
        if not self.root.is_dir():
            return []
        models = (
            [model]
            if model
            else sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        )
        out: list[CheckpointManifest] = []
        for m in models:
            folder = self.root / check_name(m, "model")
            if not folder.is_dir():
                continue
            for v in folder.iterdir():
                if v.name.startswith(".") or not v.is_dir():
                    continue
                try:
                    out.append(self.read_manifest(v))
                except CheckpointRefusedError:
                    continue
        return sorted(out, key=lambda m: (m.created_ts, m.version))

    def remove_stale_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete temp folders left by publishers that crashed before the rename (only
        those older than ``older_than_s``, so a publish in progress is left alone)."""
        count = 0
        cutoff = time.time() - older_than_s
        if self.root.is_dir():
            for tmp in self.root.glob(f"*/{_TMP_PREFIX}*"):
                if tmp.stat().st_mtime < cutoff:
                    shutil.rmtree(tmp, ignore_errors=True)
                    count += 1
        return count
