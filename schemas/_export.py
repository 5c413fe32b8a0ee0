"""JSON Schema export, so producers in other languages can validate before sending."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas._deployments import CanaryDecision, DeploymentState
from schemas._events import CHAT_EVENT_TYPES, chat_event_adapter
from schemas._jobs import CheckpointManifest, TrainJobRequest
from schemas._samples import PreferenceSample, RewardSample, SftSample
from schemas._signals import ArmWindowAggregate, ResponseOutcome, SessionSummary

_MODELS: tuple[type[BaseModel], ...] = (
    *CHAT_EVENT_TYPES,
    ResponseOutcome,
    SessionSummary,
    ArmWindowAggregate,
    RewardSample,
    SftSample,
    PreferenceSample,
    TrainJobRequest,
    CheckpointManifest,
    DeploymentState,
    CanaryDecision,
)


def json_schemas() -> dict[str, dict[str, Any]]:
    """Name → JSON Schema (draft 2020-12) for every message type, plus the ChatEvent union."""
    out: dict[str, dict[str, Any]] = {m.__name__: m.model_json_schema() for m in _MODELS}
    union: TypeAdapter[Any] = chat_event_adapter
    out["ChatEvent"] = union.json_schema()
    for name, schema in out.items():
        schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        schema.setdefault("title", name)
    return out


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one ``<Name>.schema.json`` per message type; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(json_schemas().items()):
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
