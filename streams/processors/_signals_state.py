"""State of the signals processor, per source partition, and its changelog codec.

Entries:

- ``s|<conversation id>`` → :class:`SessionState` (a tombstone once it ended);
- ``w|<arm>|<model version>|<window start ms>`` → :class:`WindowState`, while open;
- ``u|<user id>`` → :class:`UserHistory`, the user's continue rate before the current
  experiment (the covariate of CUPED);
- ``__meta__`` → :class:`SignalsMeta`.

The codec writes state version 3 and reads 2 (no session totals, no user histories) and
1 (the untyped dicts of earlier builds); see ``streams.processors._codec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic_core import to_json

from schemas import LATENCY_BUCKETS_MS, WindowCounters
from streams.processors._base import META, PartitionMeta
from streams.processors._codec import VersionedCodec, int_keys
from streams.processors._lifecycle import PendingEnd


@dataclass(slots=True)
class ReplyState:
    """A reply waiting for its outcome."""

    turn: int
    ts_ms: int
    model_version: str
    arm: str
    instruction_following: bool
    violation: bool
    latency_ms: float
    feedback: list[str]
    """Feedback kinds for this reply (each once, in arrival order)."""


def _no_latencies() -> list[int]:
    return [0] * len(LATENCY_BUCKETS_MS)


@dataclass(slots=True)
class SessionTotals:
    """What a session's decided replies on its own arm and model version add up to: at its
    end, the window adds these (and their squares and cross products) to its per-session
    sums, the units of the canary's cluster-robust variances."""

    replies: int = 0
    continued: int = 0
    violations: int = 0
    instruction_following: int = 0
    latency_buckets: list[int] = field(default_factory=_no_latencies)
    """Replies per LATENCY_BUCKETS_MS bucket."""
    covariate: float = 0.0
    """Sum of the replies' covariates (their user's pre-period continue rate)."""


@dataclass(slots=True)
class UserHistory:
    """One user's decided replies, split at the start of the current experiment (the
    first reply or session of a new candidate version this partition saw): what came
    before is the pre-period whose continue rate is CUPED's covariate; what came after
    joins the pre-period of the next experiment."""

    pre_replies: int = 0
    pre_continued: int = 0
    replies: int = 0
    """Since ``split_ms``."""
    continued: int = 0
    split_ms: int = 0
    """The experiment start the counts are split at."""
    last_ms: int = 0
    """Time of the user's last decided reply (the history is forgotten after ``user_history_s``)."""


@dataclass(slots=True)
class SessionState:
    """One conversation, from its first event until its tombstone is deleted."""

    user_id: str
    conversation_id: str
    character_id: str
    first_ms: int
    """Time of its first event (the start when no ``session_started`` came)."""
    last_ms: int
    """Time of the last user message or reply; the idle timeout counts from here."""
    arm: str | None = None
    """Learnt from ``session_started`` or the first reply; None until then."""
    model_version: str = ""
    """Learnt with ``arm``."""
    started_ms: int | None = None
    """Time of ``session_started``."""
    messages: dict[int, int] = field(default_factory=dict)
    """Turn → time of the user's message."""
    replies: dict[str, ReplyState] = field(default_factory=dict)
    """Request id → reply waiting for its outcome, in arrival order."""
    early_feedback: dict[int, list[str]] = field(default_factory=dict)
    """Turn → feedback that came before its reply."""
    decided: dict[str, int] = field(default_factory=dict)
    """Request id → turn of every reply whose outcome is out."""
    unattributed_ms: list[int] = field(default_factory=list)
    """Times of user messages that came before the arm was known (counted once it is)."""
    n_replies: int = 0
    ended_ms: int | None = None
    pending_end: PendingEnd | None = None
    totals: SessionTotals = field(default_factory=SessionTotals)
    """Its decided replies' outcomes, for the per-session sums of its end window."""

    def close(self, ended_ms: int) -> None:
        """Keep what late events need (who, arm, decided replies); drop the rest."""
        self.ended_ms = ended_ms
        self.pending_end = None
        self.messages, self.replies, self.early_feedback, self.unattributed_ms = {}, {}, {}, []


@dataclass(slots=True)
class WindowState:
    """One arm's and model version's partial of one tumbling window, while it is open."""

    arm: str
    model_version: str
    start_ms: int
    counters: WindowCounters = field(default_factory=WindowCounters)
    """The additive counts; the distinct-user ones are filled in from the three sets
    below when the window closes."""
    assigned: dict[str, None] = field(default_factory=dict)
    """Users whose session started in the window (a dict: an ordered set)."""
    engaged: dict[str, None] = field(default_factory=dict)
    """Users who sent a message."""
    active: dict[str, None] = field(default_factory=dict)
    """Users with any event of a session on the arm: breadth's denominator."""


@dataclass(slots=True)
class SignalsMeta(PartitionMeta):
    closed_until_ms: int = 0
    """Windows starting before this are closed (emitted and forgotten)."""
    late_events: dict[str, int] = field(default_factory=dict)
    """Arm → late events since its last emitted window."""
    experiments: dict[str, int] = field(default_factory=dict)
    """Candidate version → event time this partition first saw it (the latest few): the
    latest one ends the users' pre-period."""

    @property
    def experiment_ms(self) -> int:
        """Start of the current experiment (0 before any)."""
        return max(self.experiments.values(), default=0)


def window_key(arm: str, model_version: str, start_ms: int) -> str:
    return f"w|{arm}|{model_version}|{start_ms}"


_COUNTERS = WindowCounters.counter_names()


class SignalsCodec(VersionedCodec):
    """SignalsMeta, SessionState and WindowState ↔ changelog bytes.

    Version 3: ``[3, ...]`` arrays, fields in the order written below; a window's
    counters by name (windows are few and a new counter then needs no new version).
    Version 2 is version 3 without the session's totals, the meta's experiments and the
    user histories (sessions restored from it start their totals at 0). Version 1: the
    dicts of earlier builds (see ``_decode_v1_*``).
    """

    version: ClassVar[int] = 3
    reads: ClassVar[frozenset[int]] = frozenset({1, 2, 3})

    def new_meta(self) -> SignalsMeta:
        return SignalsMeta()

    def encode_meta(self, meta: SignalsMeta) -> bytes:
        return to_json([3, meta.offset, meta.watermark_ms, meta.closed_until_ms, meta.late_events, meta.experiments])

    def decode_meta(self, raw: bytes) -> SignalsMeta:
        version, doc = self.read(META, raw)
        if version == 1:
            return SignalsMeta(doc["offset"], doc["wm"], doc.get("cu", 0), doc.get("late", {}))
        offset, watermark_ms, closed_until_ms, late_events = doc[1:5]
        return SignalsMeta(offset, watermark_ms, closed_until_ms, late_events, doc[5] if version >= 3 else {})

    def encode(self, key: str, value: Any) -> bytes:
        if key.startswith("s|"):
            return _encode_session(value)
        if key.startswith("u|"):
            u: UserHistory = value
            return to_json([3, u.pre_replies, u.pre_continued, u.replies, u.continued, u.split_ms, u.last_ms])
        w: WindowState = value
        counts = w.counters
        return to_json(
            [
                3,
                w.arm,
                w.model_version,
                w.start_ms,
                {name: getattr(counts, name) for name in _COUNTERS},
                list(w.assigned),
                list(w.engaged),
                list(w.active),
            ]
        )

    def decode(self, key: str, raw: bytes) -> Any:
        version, doc = self.read(key, raw)
        session = key.startswith("s|")
        if version == 1:
            return _decode_v1_session(doc) if session else _decode_v1_window(key, doc)
        if session:
            return _decode_session(doc)
        if key.startswith("u|"):
            return UserHistory(*doc[1:])
        _, arm, model_version, start_ms, counts, assigned, engaged, active = doc
        return WindowState(
            arm,
            model_version,
            start_ms,
            WindowCounters.from_fields(counts),
            dict.fromkeys(assigned),
            dict.fromkeys(engaged),
            dict.fromkeys(active),
        )


def _encode_session(s: SessionState) -> bytes:
    # Hot: every session an event touched, at every commit. Built in place (~3.6 µs).
    pending = s.pending_end
    t = s.totals
    return to_json(
        [
            3,
            s.user_id,
            s.conversation_id,
            s.character_id,
            s.arm,
            s.model_version,
            s.started_ms,
            s.first_ms,
            s.last_ms,
            s.messages,
            {
                req: [
                    r.turn,
                    r.ts_ms,
                    r.model_version,
                    r.arm,
                    r.instruction_following,
                    r.violation,
                    r.latency_ms,
                    r.feedback,
                ]
                for req, r in s.replies.items()
            },
            s.early_feedback,
            s.decided,
            s.unattributed_ms,
            s.n_replies,
            s.ended_ms,
            None if pending is None else [pending.ts_ms, pending.reason],
            [t.replies, t.continued, t.violations, t.instruction_following, t.latency_buckets, t.covariate],
        ]
    )


def _decode_session(doc: list[Any]) -> SessionState:
    totals = SessionTotals(*doc[17]) if doc[0] >= 3 else SessionTotals()
    (
        _,
        user,
        conv,
        character,
        arm,
        mv,
        started,
        first,
        last,
        messages,
        replies,
        feedback,
        decided,
        unattributed,
        n_replies,
        ended,
        pending,
    ) = doc[:17]
    return SessionState(
        user_id=user,
        conversation_id=conv,
        character_id=character,
        arm=arm,
        model_version=mv,
        started_ms=started,
        first_ms=first,
        last_ms=last,
        messages=int_keys(messages),
        replies={req: ReplyState(*r) for req, r in replies.items()},
        early_feedback=int_keys(feedback),
        decided=decided,
        unattributed_ms=unattributed,
        n_replies=n_replies,
        ended_ms=ended,
        pending_end=None if pending is None else PendingEnd(*pending),
        totals=totals,
    )


def _decode_v1_session(d: dict[str, Any]) -> SessionState:
    """u user, cid conversation, ch character, arm, mv model version, st started, ft first
    event, lt last activity, m turn → message time, r request → reply (t turn, ts time,
    mv, arm, if instruction following, v violation, lat latency, fb feedback), fb turn →
    early feedback, done request → turn (a string), eng unattributed message times, nr
    replies, end, pe pending end ``[time, reason]`` (absent on tombstones)."""
    pending = d.get("pe")
    return SessionState(
        user_id=d["u"],
        conversation_id=d["cid"],
        character_id=d["ch"],
        arm=d["arm"],
        model_version=d["mv"] or "",
        started_ms=d["st"],
        first_ms=d["ft"],
        last_ms=d["lt"],
        messages=int_keys(d["m"]),
        replies={
            req: ReplyState(r["t"], r["ts"], r["mv"], r["arm"], r["if"], r["v"], r["lat"], r["fb"])
            for req, r in d["r"].items()
        },
        early_feedback=int_keys(d["fb"]),
        decided={req: int(turn) for req, turn in d["done"].items()},
        unattributed_ms=d["eng"],
        n_replies=d["nr"],
        ended_ms=d["end"],
        pending_end=None if pending is None else PendingEnd(pending[0], pending[1]),
    )


def _decode_v1_window(key: str, d: dict[str, Any]) -> WindowState:
    """v1 windows named arm, model version and start only in their key. s sessions, ua/ue/
    uact users assigned/engaged/active (user → 1), ut user turns, ut2 their squares, r
    responses, c continued, if instruction following, v violations, lat latency sum, lb
    latency buckets; ``late`` was never counted there (late events live in META)."""
    _, arm, rest = key.split("|", 2)
    model_version, start = rest.rsplit("|", 1)
    counts = WindowCounters(
        sessions=d["s"],
        user_turns=d["ut"],
        user_turns_sq=d["ut2"],
        responses=d["r"],
        continued=d["c"],
        instruction_following=d["if"],
        violations=d["v"],
        latency_ms_sum=d["lat"],
        latency_buckets=list(d["lb"]),
    )
    # Windows written before users_active was counted: breadth's denominator was the
    # engaged users, as such a window was emitted then.
    active = d["uact"] if "uact" in d else d["ue"]
    return WindowState(
        arm, model_version, int(start), counts, dict.fromkeys(d["ua"]), dict.fromkeys(d["ue"]), dict.fromkeys(active)
    )
