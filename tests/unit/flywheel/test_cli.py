"""The CLI reads well and its foundation commands work on the embedded bus."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from flywheel.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("produce", "topics", "schemas"):
        assert command in result.output


def test_schemas_export_writes_valid_json_schemas(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.schema.json"))
    assert len(files) >= 10
    for path in files:
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_topics_create_is_idempotent_on_embedded_bus(monkeypatch) -> None:
    monkeypatch.setenv("FLYWHEEL_BUS", "embedded")
    result = runner.invoke(app, ["topics", "create"])
    assert result.exit_code == 0 and "chat.events" in result.output
