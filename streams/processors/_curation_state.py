"""State of the curation processor, per source partition, and its changelog codec.

Entries (every text in them is PII-redacted):

- ``c|<conversation id>`` → :class:`ConversationState` (a tombstone once it ended);
- ``d|<normalised-text hash>`` → :class:`SeenText`: an SFT reply already emitted;
- ``n|<sequence>`` → :class:`SeenSignature`: its MinHash signature (near duplicates);
- ``x|<hash of character and context>`` → :class:`PairPool`: replies waiting for the
  other arm's reply to the same context (``pair_across_arms``);
- ``__meta__`` → :class:`CurationMeta`.

The codec writes state version 2 and reads 1 (the untyped dicts of earlier builds); see
``streams.processors._codec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic_core import to_json

from schemas import ChatMessage, Instruction, instruction_adapter
from streams.processors._base import META, PartitionMeta
from streams.processors._codec import VersionedCodec, int_keys
from streams.processors._lifecycle import PendingEnd


@dataclass(slots=True)
class CuratedReply:
    """A reply waiting for its outcome (all replies of a turn are decided together)."""

    turn: int
    ts_ms: int
    text: str
    model_version: str
    arm: str
    instruction_following: bool
    violation: bool
    regenerated: bool
    """The gateway's flag: this reply replaced an earlier one of the turn."""
    instructions: tuple[Instruction, ...]
    feedback: list[str]
    """Feedback kinds for this reply (each once, in arrival order)."""


@dataclass(slots=True)
class ConversationState:
    """One conversation, from its first event until its tombstone is deleted."""

    user_id: str
    conversation_id: str
    character_id: str
    last_ms: int
    """Time of the last event; the idle timeout counts from here."""
    messages: dict[int, int] = field(default_factory=dict)
    """Turn → time of the user's message."""
    user_messages: dict[int, ChatMessage] = field(default_factory=dict)
    """Turn → the user's message as later samples' context shows it (``context_turns`` kept)."""
    assistant_messages: dict[int, ChatMessage] = field(default_factory=dict)
    """Turn → the reply the user saw last, as later samples' context shows it."""
    replies: dict[str, CuratedReply] = field(default_factory=dict)
    """Request id → reply waiting for its outcome, in arrival order."""
    early_feedback: dict[int, list[str]] = field(default_factory=dict)
    """Turn → feedback that came before its reply."""
    decided_turns: set[int] = field(default_factory=set)
    """Turns whose replies are decided (a later reply to one of them is too late)."""
    ended_ms: int | None = None
    pending_end: PendingEnd | None = None

    def context(self, turn: int) -> tuple[ChatMessage, ...]:
        """The messages a reply to ``turn`` answered: the kept user messages up to ``turn``
        and the replies the user saw before it."""
        msgs: list[ChatMessage] = []
        user, assistant = self.user_messages, self.assistant_messages
        for t in sorted(user.keys() | assistant.keys()):
            if t > turn:
                break
            if t in user:
                msgs.append(user[t])
            if t < turn and t in assistant:
                msgs.append(assistant[t])
        return tuple(msgs)

    def user_wrote(self, turn: int, text: str) -> None:
        """The user's (redacted) message of ``turn``, for the context of later samples."""
        self.user_messages[turn] = ChatMessage.trusted(role="user", content=text)

    def keep_context(self, turn: int, reply_text: str, turns: int) -> None:
        """``reply_text`` is what the user saw last for ``turn``; keep the last ``turns`` turns."""
        self.assistant_messages[turn] = ChatMessage.trusted(role="assistant", content=reply_text)
        for old in sorted(self.assistant_messages)[:-turns]:
            self.assistant_messages.pop(old, None)
            self.user_messages.pop(old, None)

    def close(self, ended_ms: int) -> None:
        """Keep what late events need (who, decided turns); drop the texts."""
        self.ended_ms = ended_ms
        self.pending_end = None
        self.messages, self.user_messages, self.assistant_messages, self.early_feedback = {}, {}, {}, {}


@dataclass(slots=True)
class SeenText:
    """An emitted SFT reply's normalised text (by its hash in the key)."""

    seq: int
    """CurationMeta.seq when it was seen: the oldest are forgotten first."""


@dataclass(slots=True)
class SeenSignature:
    """The MinHash signature of an emitted SFT reply."""

    seq: int
    signature: list[int]


@dataclass(slots=True)
class PooledReply:
    """A reply waiting in a PairPool for the other arm's reply with the opposite outcome."""

    conversation_id: str
    request_id: str
    text: str
    ts_ms: int
    instructions: tuple[Instruction, ...]


@dataclass(slots=True)
class PairPool:
    """Unpaired replies to one context, by (arm, continued)."""

    seq: int
    """CurationMeta.seq at its last change: pools are evicted oldest first."""
    waiting: dict[tuple[str, bool], PooledReply] = field(default_factory=dict)


@dataclass(slots=True)
class CurationMeta(PartitionMeta):
    seq: int = 0
    """Sequence number of the last dedup entry or pool change of the partition."""


def _messages(role: str, texts: dict[str, str]) -> dict[int, ChatMessage]:
    return {int(t): ChatMessage.trusted(role=role, content=text) for t, text in texts.items()}


def _instructions(docs: list[dict[str, Any]]) -> tuple[Instruction, ...]:
    return tuple(instruction_adapter.validate_python(d) for d in docs)


class CurationCodec(VersionedCodec):
    """CurationMeta and the entries above ↔ changelog bytes: version 2, ``[2, ...]`` arrays
    in the orders written below (instructions as their JSON documents); version 1, the
    dicts of earlier builds (see ``_decode_v1``)."""

    version: ClassVar[int] = 2
    reads: ClassVar[frozenset[int]] = frozenset({1, 2})

    def new_meta(self) -> CurationMeta:
        return CurationMeta()

    def encode_meta(self, meta: CurationMeta) -> bytes:
        return to_json([2, meta.offset, meta.watermark_ms, meta.seq])

    def decode_meta(self, raw: bytes) -> CurationMeta:
        version, doc = self.read(META, raw)
        if version == 1:
            return CurationMeta(doc["offset"], doc["wm"], doc.get("seq", 0))
        _, offset, watermark_ms, seq = doc
        return CurationMeta(offset, watermark_ms, seq)

    def encode(self, key: str, value: Any) -> bytes:
        kind = key[0]
        if kind == "c":
            return _encode_conversation(value)
        if kind == "d":
            return to_json([2, value.seq])
        if kind == "n":
            return to_json([2, value.seq, value.signature])
        pool: PairPool = value
        waiting = [
            [arm, good, r.conversation_id, r.request_id, r.text, r.ts_ms, r.instructions]
            for (arm, good), r in pool.waiting.items()
        ]
        return to_json([2, pool.seq, waiting])

    def decode(self, key: str, raw: bytes) -> Any:
        version, doc = self.read(key, raw)
        if version == 1:
            return _decode_v1(key, doc)
        kind = key[0]
        if kind == "c":
            return _decode_conversation(doc)
        if kind == "d":
            return SeenText(doc[1])
        if kind == "n":
            return SeenSignature(doc[1], doc[2])
        _, seq, waiting = doc
        return PairPool(
            seq,
            {
                (arm, good): PooledReply(cid, req, text, ts, _instructions(instr))
                for arm, good, cid, req, text, ts, instr in waiting
            },
        )


def _encode_conversation(c: ConversationState) -> bytes:
    pending = c.pending_end
    replies = {
        req: [
            r.turn,
            r.ts_ms,
            r.text,
            r.model_version,
            r.arm,
            r.instruction_following,
            r.violation,
            r.regenerated,
            r.instructions,
            r.feedback,
        ]
        for req, r in c.replies.items()
    }
    return to_json(
        [
            2,
            c.user_id,
            c.conversation_id,
            c.character_id,
            c.last_ms,
            c.messages,
            {t: m.content for t, m in c.user_messages.items()},
            {t: m.content for t, m in c.assistant_messages.items()},
            replies,
            c.early_feedback,
            sorted(c.decided_turns),
            c.ended_ms,
            None if pending is None else [pending.ts_ms, pending.reason],
        ]
    )


def _decode_conversation(doc: list[Any]) -> ConversationState:
    (
        _,
        user,
        conv,
        character,
        last,
        messages,
        user_texts,
        assistant_texts,
        replies,
        feedback,
        decided,
        ended,
        pending,
    ) = doc
    return ConversationState(
        user_id=user,
        conversation_id=conv,
        character_id=character,
        last_ms=last,
        messages=int_keys(messages),
        user_messages=_messages("user", user_texts),
        assistant_messages=_messages("assistant", assistant_texts),
        replies={
            req: CuratedReply(t, ts, text, mv, arm, follows, violation, regen, _instructions(instr), fb)
            for req, (t, ts, text, mv, arm, follows, violation, regen, instr, fb) in replies.items()
        },
        early_feedback=int_keys(feedback),
        decided_turns=set(decided),
        ended_ms=ended,
        pending_end=None if pending is None else PendingEnd(*pending),
    )


def _decode_v1(key: str, doc: Any) -> Any:
    """Version 1. ``c|``: u user, cid conversation, ch character, lt last event, m turn →
    message time, ut / at turn → user / assistant text, r request → reply (t turn, ts time,
    text, mv, arm, if instruction following, v violation, regen, instr instructions, fb
    feedback), fb turn → early feedback, done turn → 1, end, pe pending end time (a bare
    number: v1 kept no reason; curation never reads it). ``d|``: the sequence number.
    ``n|``: s sequence, sig signature. ``x|``: s sequence, r "<arm>|<True/False>" → reply
    (cid, req, text, ts, instr)."""
    kind = key[0]
    if kind == "d":
        return SeenText(doc)
    if kind == "n":
        return SeenSignature(doc["s"], doc["sig"])
    if kind == "x":
        waiting = {}
        for slot, r in doc["r"].items():
            arm, good = slot.split("|")
            waiting[arm, good == "True"] = PooledReply(
                r["cid"], r["req"], r["text"], r["ts"], _instructions(r["instr"])
            )
        return PairPool(doc["s"], waiting)
    pending = doc.get("pe")
    return ConversationState(
        user_id=doc["u"],
        conversation_id=doc["cid"],
        character_id=doc["ch"],
        last_ms=doc["lt"],
        messages=int_keys(doc["m"]),
        user_messages=_messages("user", doc["ut"]),
        assistant_messages=_messages("assistant", doc["at"]),
        replies={
            req: CuratedReply(
                r["t"],
                r["ts"],
                r["text"],
                r["mv"],
                r["arm"],
                r["if"],
                r["v"],
                r["regen"],
                _instructions(r["instr"]),
                r["fb"],
            )
            for req, r in doc["r"].items()
        },
        early_feedback=int_keys(doc["fb"]),
        decided_turns={int(turn) for turn in doc["done"]},
        ended_ms=doc["end"],
        pending_end=None if pending is None else PendingEnd(pending, ""),
    )
