"""Exported JSON Schemas validate good events and reject bad ones with an independent validator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from schemas import export_json_schemas


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schemas")
    export_json_schemas(directory)
    return directory


def _validator(schema_dir: Path, name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((schema_dir / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_one_file_per_message_type(schema_dir: Path) -> None:
    names = {p.name.removesuffix(".schema.json") for p in schema_dir.iterdir()}
    assert {
        "ChatEvent",
        "UserMessageEvent",
        "ModelResponseEvent",
        "TrainJobRequest",
        "CheckpointManifest",
        "DeploymentState",
        "CanaryDecision",
        "RewardSample",
        "ArmWindowAggregate",
    } <= names


@pytest.mark.parametrize(
    "type_", ["session_started", "user_message", "model_response", "user_feedback", "session_ended"]
)
def test_union_schema_accepts_good_events(
    schema_dir: Path, type_: str, make_event: Callable[..., dict[str, Any]]
) -> None:
    _validator(schema_dir, "ChatEvent").validate(make_event(type_))


@pytest.mark.parametrize(
    "change",
    [
        {"type": "user_sneezed"},
        {"turn": "three"},
        {"mood": "happy"},
        {"event_id": "not-a-uuid"},
    ],
)
def test_union_schema_rejects_bad_events(
    schema_dir: Path, change: dict[str, Any], make_event: Callable[..., dict[str, Any]]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validator(schema_dir, "ChatEvent").validate(make_event("user_message", **change))


def test_missing_field_rejected(schema_dir: Path, make_event: Callable[..., dict[str, Any]]) -> None:
    doc = make_event("model_response")
    del doc["arm"]
    with pytest.raises(jsonschema.ValidationError):
        _validator(schema_dir, "ModelResponseEvent").validate(doc)
