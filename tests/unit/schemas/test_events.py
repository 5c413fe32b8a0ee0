"""Chat event contract: round trips, and every kind of bad input gives one typed error."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from schemas import CHAT_EVENT_TYPES, SchemaError, ValidationLimits, chat_event_adapter, parse_chat_event

EVENT_TYPES = [t.model_fields["type"].default for t in CHAT_EVENT_TYPES]


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_round_trip(type_: str, make_event: Callable[..., dict[str, Any]]) -> None:
    raw = json.dumps(make_event(type_)).encode()
    event = parse_chat_event(raw)
    assert event.type == type_
    again = parse_chat_event(event.model_dump_json())
    assert again == event
    assert chat_event_adapter.validate_python(event.model_dump()) == event


def _error(doc: dict[str, Any] | bytes, limits: ValidationLimits | None = None) -> SchemaError:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(SchemaError) as info:
        parse_chat_event(raw, limits or ValidationLimits())
    return info.value


def test_wrong_type(make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("user_message", turn="three"))
    assert err.field == "turn" and "integer" in err.reason


def test_missing_field(make_event: Callable[..., dict[str, Any]]) -> None:
    doc = make_event("model_response")
    del doc["model_version"]
    err = _error(doc)
    assert err.field == "model_version" and "required" in err.reason.lower()


def test_unknown_type(make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("user_message", type="user_sneezed"))
    assert err.field == "type" and "user_sneezed" in err.reason


def test_missing_type(make_event: Callable[..., dict[str, Any]]) -> None:
    doc = make_event("user_message")
    del doc["type"]
    assert _error(doc).field == "type"


def test_unknown_schema_version(make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("user_message", schema_version=2))
    assert err.field == "schema_version" and "unknown schema_version 2" in err.reason


def test_unknown_field(make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("user_message", mood="happy"))
    assert err.field == "mood" and err.reason.startswith("unknown field")


def test_oversized_text_uses_configured_limit(make_event: Callable[..., dict[str, Any]]) -> None:
    doc = make_event("user_message", text="x" * 101)
    err = _error(doc, ValidationLimits(max_text_chars=100))
    assert err.field == "text" and "101 characters" in err.reason and "100" in err.reason
    assert parse_chat_event(json.dumps(doc), ValidationLimits(max_text_chars=200)).text == "x" * 101


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        ("2026-01-01T12:00:00", "UTC"),  # naive
        ("2026-01-01T12:00:00+02:00", "UTC"),  # not UTC
        ("1970-01-01T00:00:00Z", "clock"),  # absurdly old
        ((datetime.now(UTC) + timedelta(days=2)).isoformat(), "future"),
        ("yesterday", "datetime"),
    ],
)
def test_bad_timestamps(ts: str, words: str, make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("user_message", ts=ts))
    assert err.field == "ts" and words in err.reason


def test_not_json() -> None:
    err = _error(b'{"type": "user_message",')
    assert err.field == "" and "JSON" in err.reason


def test_bad_instruction_is_reported_inside_the_list(make_event: Callable[..., dict[str, Any]]) -> None:
    err = _error(make_event("model_response", instructions=[{"kind": "max_words", "limit": 0}]))
    assert err.field.startswith("instructions.0") and "greater than 0" in err.reason


def test_events_are_frozen(make_event: Callable[..., dict[str, Any]]) -> None:
    event = parse_chat_event(json.dumps(make_event("user_message")))
    with pytest.raises(pydantic.ValidationError):
        event.text = "changed"  # type: ignore[misc]
