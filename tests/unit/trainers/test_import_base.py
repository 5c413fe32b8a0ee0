"""Importing an external base model: a complete Hugging Face folder is published as a full
base; anything else is refused with every problem named. Pure file logic, no torch."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import CheckpointManifest
from trainers.registry import (
    BaseModelFolderError,
    CheckpointRegistry,
    RegistryConfig,
    VersionConflictError,
    check_base_folder,
    import_base,
    lora_base_of,
)


def _safetensors(path: Path, n: int = 4) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * (4 * n))


def _base_folder(tmp_path: Path, name: str = "base", hidden: int = 8) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": hidden}))
    _safetensors(folder / "model.safetensors")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> CheckpointRegistry:
    return CheckpointRegistry(RegistryConfig(root=tmp_path / "registry"))


def test_a_complete_folder_is_published_as_a_full_base_once(registry: CheckpointRegistry, tmp_path: Path) -> None:
    folder = _base_folder(tmp_path)
    published = import_base(registry, folder, "policy", "base")
    m = published.manifest
    assert (m.model, m.version, m.kind, m.parent, m.lora_base, m.status) == (
        "policy",
        "base",
        "full",
        None,
        None,
        "published",
    )
    assert m.training["source"] == "import" and m.training["model_type"] == "llama"
    assert {f.path for f in m.files} == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    assert registry.open("policy", "base").manifest == m
    assert import_base(registry, folder, "policy", "base").manifest == m  # the same folder again: a no-op


def test_another_folder_under_a_published_version_is_refused(registry: CheckpointRegistry, tmp_path: Path) -> None:
    import_base(registry, _base_folder(tmp_path, "a"), "policy", "base")
    with pytest.raises(VersionConflictError):
        import_base(registry, _base_folder(tmp_path, "b", hidden=16), "policy", "base")
    assert (
        import_base(registry, _base_folder(tmp_path, "c", hidden=16), "policy", "base-2").manifest.version == "base-2"
    )


def test_sharded_weights_with_an_index_are_accepted(tmp_path: Path) -> None:
    folder = _base_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        _safetensors(folder / shard)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    check_base_folder(folder)


def _no_config(f: Path) -> None:
    (f / "config.json").unlink()


def _no_model_type(f: Path) -> None:
    (f / "config.json").write_text(json.dumps({"hidden_size": 8}))


def _bad_config_json(f: Path) -> None:
    (f / "config.json").write_text("{not json")


def _no_weights(f: Path) -> None:
    (f / "model.safetensors").unlink()


def _pickle_weights_only(f: Path) -> None:
    (f / "model.safetensors").rename(f / "pytorch_model.bin")


def _truncated_weights(f: Path) -> None:
    data = (f / "model.safetensors").read_bytes()
    (f / "model.safetensors").write_bytes(data[:20])


def _not_safetensors(f: Path) -> None:
    (f / "model.safetensors").write_bytes(b"PK\x03\x04 a zip file, not safetensors" * 10)


def _index_names_a_missing_shard(f: Path) -> None:
    (f / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001.safetensors"}}))


def _pickle_beside(f: Path) -> None:
    (f / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")


def _symlink(f: Path) -> None:
    (f / "model.safetensors").rename(f.parent / "blob")
    (f / "model.safetensors").symlink_to(f.parent / "blob")


def _no_tokenizer(f: Path) -> None:
    (f / "tokenizer.json").unlink()


def _no_chat_template(f: Path) -> None:
    (f / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))


def _adapter(f: Path) -> None:
    (f / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/base", "r": 8}))


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (_no_config, "no config.json"),
        (_no_model_type, "no model_type"),
        (_bad_config_json, "config.json is not valid JSON"),
        (_no_weights, "no safetensors weights"),
        (_pickle_weights_only, "pytorch_model.bin is a pickle-based file"),
        (_truncated_weights, "is not safetensors or is truncated"),
        (_not_safetensors, "is not safetensors or is truncated"),
        (_index_names_a_missing_shard, "weight file model-00001.safetensors is missing"),
        (_pickle_beside, "pytorch_model.bin is a pickle-based file"),
        (_symlink, "model.safetensors is a symbolic link"),
        (_no_tokenizer, "no tokenizer"),
        (_no_chat_template, "no chat template"),
        (_adapter, "is a LoRA adapter"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_an_incomplete_folder_is_refused_with_its_problem(
    registry: CheckpointRegistry, tmp_path: Path, spoil: Callable[[Path], None], says: str
) -> None:
    folder = _base_folder(tmp_path)
    spoil(folder)
    with pytest.raises(BaseModelFolderError) as info:
        import_base(registry, folder, "policy", "base")
    assert info.value.path == folder
    assert any(says in p for p in info.value.problems), info.value.problems
    assert not registry.exists("policy", "base")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    folder = _base_folder(tmp_path)
    _no_model_type(folder)
    _no_weights(folder)
    _no_chat_template(folder)
    with pytest.raises(BaseModelFolderError) as info:
        check_base_folder(folder)
    assert len(info.value.problems) == 3
    assert all(p in str(info.value) for p in info.value.problems)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseModelFolderError, match="is not a folder"):
        check_base_folder(tmp_path / "nowhere")


def _manifest(version: str, kind: str, lora_base: str | None = None) -> CheckpointManifest:
    return CheckpointManifest(
        model="policy",
        version=version,
        parent=None,
        kind=kind,  # type: ignore[arg-type]
        lora_base=lora_base,
        status="published",
        created_ts=datetime.now(UTC),
    )


def test_lora_base_follows_the_lineage() -> None:
    base = _manifest("base", "full")
    gen1 = _manifest("v-1", "lora", lora_base="base")
    assert lora_base_of(base, "lora") == "base"  # a fresh adapter applies to its full start
    assert lora_base_of(gen1, "lora") == "base"  # a continued adapter keeps the lineage's base
    assert lora_base_of(gen1, "full") is None  # a full-weight generation is a base of its own
    assert lora_base_of(_manifest("v-2", "full"), "lora") == "v-2"
    assert lora_base_of(_manifest("old", "lora"), "lora") is None  # published before lora_base existed
