"""`flywheel registry import-base`: help text, a good folder published, a bad one refused."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flywheel.cli import app

runner = CliRunner()


def _base_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    return folder


@pytest.fixture
def registry_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "registry"
    monkeypatch.setenv("FLYWHEEL_TRAINERS__REGISTRY__ROOT", str(root))
    return root


def test_import_base_help_reads_well() -> None:
    result = runner.invoke(app, ["registry", "import-base", "--help"])
    assert result.exit_code == 0
    for words in ("FOLDER", "--model", "--version", "vLLM", "LoRA", "FLYWHEEL_TRAINERS__BASE_DIR"):
        assert words in result.output


def test_import_base_publishes_a_folder_once(tmp_path: Path, registry_root: Path) -> None:
    folder = _base_folder(tmp_path)
    first = runner.invoke(app, ["registry", "import-base", str(folder), "--model", "chat"])
    assert first.exit_code == 0, first.output
    assert "chat/base" in first.output and (registry_root / "chat" / "base" / "manifest.json").is_file()
    again = runner.invoke(app, ["registry", "import-base", str(folder), "--model", "chat"])
    assert again.exit_code == 0 and again.output == first.output
    listed = runner.invoke(app, ["registry", "list", "--model", "chat"])
    assert "base" in listed.output and "full" in listed.output


def test_import_base_names_the_problem_and_exits_2(tmp_path: Path, registry_root: Path) -> None:
    folder = _base_folder(tmp_path)
    (folder / "chat_template.jinja").unlink()
    result = runner.invoke(app, ["registry", "import-base", str(folder)])
    assert result.exit_code == 2
    assert "no chat template" in result.output
    assert not (registry_root / "policy" / "base").exists()


def test_workers_read_base_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel.settings import load_settings

    monkeypatch.delenv("FLYWHEEL_TRAINERS__BASE_DIR", raising=False)
    assert load_settings().trainers.base_dir is None  # default: the bootstrap model
    monkeypatch.setenv("FLYWHEEL_TRAINERS__BASE_DIR", str(tmp_path / "llama"))
    assert load_settings().trainers.base_dir == tmp_path / "llama"
