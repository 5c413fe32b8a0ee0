"""The chat events of one turn: ``session_started`` (turn 1) and ``user_message`` when the
request is opened, ``model_response`` when the reply is complete. An event that does not
validate is counted and skipped: it never fails the request."""

from __future__ import annotations

import logging
import os
import random
import uuid
from typing import Any

from pydantic import ValidationError

from schemas import ModelResponseEvent, SessionStartedEvent, UserMessageEvent
from serving import _metrics as m
from serving.engines.base import Delta
from serving.gateway.caller import Caller
from serving.gateway.events import EventLogger
from serving.routing import Route

log = logging.getLogger(__name__)
_ids = random.Random()  # seeded from os.urandom once; ids need uniqueness, not secrecy
# A forked worker (uvicorn --workers, gunicorn) would otherwise draw the parent's sequence.
os.register_at_fork(after_in_child=_ids.seed)


def event_id() -> uuid.UUID:
    """A random (version 4) UUID without a getrandom() system call per id."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def log_user_turn(events: EventLogger | None, surface: str, caller: Caller, r: Route) -> None:
    """``session_started`` on turn 1 and the ``user_message`` (not again for a regeneration)."""
    if events is None or caller.user_id is None:
        return  # without a user there is no experiment unit to attribute the turn to
    if caller.regenerated:
        return  # the user message of this turn was logged with the first reply
    try:
        common: dict[str, Any] = dict(
            ts=caller.ts(),
            user_id=caller.user_id,
            conversation_id=caller.conversation_id,
            character_id=caller.character_id,
            surface=surface,
        )
        if caller.turn == 1:
            events.log(SessionStartedEvent(event_id=event_id(), arm=r.arm, model_version=r.version, **common))
        events.log(UserMessageEvent(event_id=event_id(), turn=caller.turn, text=caller.last_user_text, **common))
    except ValidationError as exc:
        m.EVENTS_FAILED.inc()
        log.warning("chat event not logged: %s", exc.errors(include_url=False)[0]["msg"])


def log_reply(
    events: EventLogger | None,
    surface: str,
    caller: Caller,
    r: Route,
    request_id: str,
    text: str,
    last: Delta,
    elapsed_s: float,
) -> None:
    """The ``model_response`` of a complete reply."""
    if events is None or caller.user_id is None:
        return
    try:
        event = ModelResponseEvent(
            event_id=event_id(),
            ts=caller.ts(elapsed_s),
            user_id=caller.user_id,
            conversation_id=caller.conversation_id,
            character_id=caller.character_id,
            surface=surface,
            turn=caller.turn,
            text=text,
            model_version=r.version,
            arm=r.arm,
            request_id=request_id,
            latency_ms=elapsed_s * 1000.0,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            instructions=caller.instructions,
            regenerated=caller.regenerated,
        )
    except ValidationError as exc:
        m.EVENTS_FAILED.inc()
        log.warning("model_response not logged: %s", exc.errors(include_url=False)[0]["msg"])
        return
    events.log(event)
