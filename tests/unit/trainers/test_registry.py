"""Registry: atomic, idempotent, immutable publishes; bad checkpoints are never loadable."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import CheckpointManifest, OffsetRange
from trainers.registry import (
    CheckpointRefusedError,
    CheckpointRegistry,
    RegistryConfig,
    VersionConflictError,
    version_for_job,
)


def _source(tmp_path: Path, name: str = "src", payload: bytes = b"weights") -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "model.safetensors").write_bytes(payload * 1000)
    (src / "config.json").write_text(json.dumps({"hidden_size": 8}))
    return src


def _manifest(job_id: str = "job-1", **overrides: object) -> CheckpointManifest:
    fields: dict[str, object] = dict(
        model="tiny",
        version=version_for_job(job_id),
        parent=None,
        kind="full",
        job_id=job_id,
        job_kind="sft",
        lineage=(OffsetRange(topic="samples.sft", partition=0, from_offset=0, to_offset=10),),
        status="published",
        created_ts=datetime.now(UTC),
    )
    fields.update(overrides)
    return CheckpointManifest(**fields)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> CheckpointRegistry:
    return CheckpointRegistry(RegistryConfig(root=tmp_path / "registry"))


def test_publish_writes_checksummed_manifest_and_open_verifies(registry: CheckpointRegistry, tmp_path: Path) -> None:
    published = registry.publish(_source(tmp_path), _manifest())
    opened = registry.open("tiny", published.manifest.version)
    assert {f.path for f in opened.manifest.files} == {"model.safetensors", "config.json"}
    assert opened.manifest.lineage == _manifest().lineage
    assert [m.version for m in registry.list("tiny")] == [version_for_job("job-1")]


def test_version_is_deterministic_and_retry_is_idempotent(registry: CheckpointRegistry, tmp_path: Path) -> None:
    assert version_for_job("job-1") == version_for_job("job-1") != version_for_job("job-2")
    first = registry.publish(_source(tmp_path, "a"), _manifest())
    again = registry.publish(_source(tmp_path, "b", payload=b"other"), _manifest())
    assert again.manifest == first.manifest  # the retry did not overwrite
    with pytest.raises(VersionConflictError):
        registry.publish(_source(tmp_path, "c"), _manifest(job_id="job-2", version=first.manifest.version))


def test_concurrent_publishes_of_one_version_leave_exactly_one(registry: CheckpointRegistry, tmp_path: Path) -> None:
    sources = [_source(tmp_path, f"s{i}", payload=bytes([i]) * 10) for i in range(6)]
    results: list[object] = []
    errors: list[BaseException] = []

    def publish(src: Path) -> None:
        try:
            results.append(registry.publish(src, _manifest()))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    digests = {r.manifest.files for r in results}  # type: ignore[attr-defined]
    assert len(digests) == 1
    assert len(os.listdir(registry.root / "tiny")) == 1  # no temp folders left behind
    registry.open("tiny", version_for_job("job-1"))


def test_checksum_mismatch_is_refused(registry: CheckpointRegistry, tmp_path: Path) -> None:
    ckpt = registry.publish(_source(tmp_path), _manifest())
    weights = ckpt.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointRefusedError, match="checksum mismatch"):
        registry.open("tiny", ckpt.manifest.version)


def test_pickle_files_are_refused_on_publish_and_on_load(registry: CheckpointRegistry, tmp_path: Path) -> None:
    src = _source(tmp_path)
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointRefusedError, match="pickle"):
        registry.publish(src, _manifest())
    assert not registry.path("tiny", version_for_job("job-1")).exists()
    ok = registry.publish(_source(tmp_path, "clean"), _manifest(job_id="job-9"))
    (ok.path / "optimizer.pt").write_bytes(b"\x80\x04pickle")  # smuggled in afterwards
    with pytest.raises(CheckpointRefusedError, match="pickle"):
        registry.open("tiny", ok.manifest.version)


def test_path_traversal_in_manifest_is_refused(registry: CheckpointRegistry, tmp_path: Path) -> None:
    ckpt = registry.publish(_source(tmp_path), _manifest())
    doc = json.loads((ckpt.path / "manifest.json").read_text())
    doc["files"][0]["path"] = "../../etc/passwd"
    (ckpt.path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointRefusedError, match="leaves the checkpoint folder"):
        registry.open("tiny", ckpt.manifest.version)
    with pytest.raises(ValueError):
        registry.path("tiny", "../escape")


def _crash_before_rename(root: str, src: str) -> None:
    import trainers.registry.registry as reg

    def die(*_: object) -> None:
        os._exit(9)  # the process dies between the temp write and the rename

    reg.os.rename = die  # type: ignore[assignment]
    reg.CheckpointRegistry(RegistryConfig(root=Path(root))).publish(Path(src), _manifest())


def test_crash_between_temp_write_and_rename_leaves_nothing_loadable(
    registry: CheckpointRegistry, tmp_path: Path
) -> None:
    src = _source(tmp_path)
    proc = mp.get_context("spawn").Process(target=_crash_before_rename, args=(str(registry.root), str(src)))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    version = version_for_job("job-1")
    assert not registry.path("tiny", version).exists()
    assert registry.list("tiny") == []
    leftovers = [p for p in (registry.root / "tiny").iterdir()]
    assert leftovers and all(p.name.startswith(".tmp-") for p in leftovers)
    assert registry.remove_stale_temp(older_than_s=0) == len(leftovers)
    # The retry of the job publishes the one version normally.
    assert registry.publish(src, _manifest()).manifest.version == version
