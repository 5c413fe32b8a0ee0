"""Synthetic chat traffic, deterministic by seed: for parity tests, crash tests and benchmarks.

Sessions of several turns with replies, regenerations, feedback, sessions that end or
go idle, sessions without replies, small out-of-order jitter within a user's events,
and a share of undecodable or invalid events (which must be dead-lettered).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

_REPLIES = (
    "That sounds great, tell me more about it?",
    "I see. What happened next?",
    "Sure thing!",
    "Honestly I have no idea, but it is fun to think about.",
    "Why do you say that?",
    "Let us try something new today. How about a story?",
    "You are such a loser.",
    "Absolutely, I love that idea 😀",
    "Hmm, interesting. Can you explain?",
    "Okay.",
)
_MESSAGES = (
    "hi",
    "tell me a joke",
    "what do you think?",
    "I had a long day",
    "ok",
    "why?",
    "let's talk about space",
    "my email is jane.doe@example.com",
    "sure",
    "no thanks",
)
_INSTRUCTIONS: list[list[dict[str, Any]]] = [
    [],
    [{"kind": "end_with_question"}],
    [{"kind": "max_words", "limit": 8}],
    [{"kind": "no_emoji"}, {"kind": "max_sentences", "limit": 2}],
]


def synthetic_events(
    n_events: int,
    seed: int = 7,
    users: int = 2000,
    start: datetime | None = None,
    bad_share: float = 0.002,
    span_s: float = 6 * 3600,
) -> list[tuple[str | None, bytes]]:
    """At least ``n_events`` (key, value) pairs of ``chat.events``, ordered by event time
    with per-user jitter. Event times lie in [start, start + span_s]."""
    rng = random.Random(seed)
    start = start or (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    per_session = 9  # rough mean, to spread sessions over the span
    n_sessions = max(1, n_events // per_session)
    gap = span_s / n_sessions
    rows: list[tuple[float, int, str | None, bytes]] = []
    seq = 0
    count = 0
    s = 0
    while count < n_events:
        user = f"user-{rng.randrange(users)}"
        conv = f"conv-{seed}-{s}"
        t = s * gap + rng.random() * gap
        s += 1
        arm = "candidate" if rng.random() < 0.3 else "baseline"
        mv = "v2" if arm == "candidate" else "v1"
        base = {"user_id": user, "conversation_id": conv, "character_id": f"char-{rng.randrange(5)}", "surface": "app"}
        events: list[tuple[float, dict[str, Any]]] = []

        def add(
            dt: float,
            type_: str,
            events: list[tuple[float, dict[str, Any]]] = events,
            base: dict[str, str] = base,
            **fields: Any,
        ) -> None:
            events.append(
                (
                    dt,
                    {
                        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                        "schema_version": 1,
                        "type": type_,
                        **base,
                        **fields,
                    },
                )
            )

        if rng.random() > 0.05:
            add(t, "session_started", arm=arm, model_version=mv)
        turns = rng.randint(1, 6)
        no_replies = rng.random() < 0.05
        for turn in range(1, turns + 1):
            t += rng.uniform(5, 900 if rng.random() < 0.15 else 120)
            add(t, "user_message", turn=turn, text=rng.choice(_MESSAGES))
            if no_replies:
                continue
            replies = 2 if rng.random() < 0.1 else 1
            for k in range(replies):
                t += rng.uniform(0.5, 5)
                add(
                    t,
                    "model_response",
                    turn=turn,
                    text=rng.choice(_REPLIES),
                    model_version=mv,
                    arm=arm,
                    request_id=f"{conv}-{turn}-{k}",
                    latency_ms=round(rng.uniform(20, 3000), 1),
                    prompt_tokens=rng.randint(10, 500),
                    completion_tokens=rng.randint(1, 80),
                    instructions=rng.choice(_INSTRUCTIONS),
                    regenerated=k > 0,
                )
            if rng.random() < 0.2:
                add(
                    t + rng.uniform(-1, 3),
                    "user_feedback",
                    turn=turn,
                    kind=rng.choice(["thumbs_up", "thumbs_down", "copy", "regenerate", "report"]),
                )
        if rng.random() < 0.7:
            add(t + rng.uniform(1, 60), "session_ended", reason=rng.choice(["user_left", "closed"]))
        for dt, doc in events:
            ts = start + timedelta(seconds=dt)
            doc["ts"] = ts.isoformat().replace("+00:00", "Z")
            # Jitter the order a little: producers and networks reorder events.
            order = dt + (rng.uniform(-2, 2) if rng.random() < 0.1 else 0)
            rows.append((order, seq, user, json.dumps(doc).encode()))
            seq += 1
            count += 1
            if rng.random() < bad_share:
                bad = rng.choice(
                    [
                        b"{not json",
                        json.dumps({**doc, "turn": -1}).encode(),
                        json.dumps({**doc, "schema_version": 99}).encode(),
                    ]
                )
                rows.append((order, seq, user, bad))
                seq += 1
                count += 1
    rows.sort()
    return [(key, value) for _, _, key, value in rows]
