"""The life of a conversation in a chat-event processor, in event time: shared by the
signals and curation processors, each of which holds one ConversationLifecycle.

- **Open**: a conversation's first event creates its state; an idle timer is armed.
- **Idle**: with no user message or reply for ``idle`` (+ grace) it times out. One
  timer per open conversation, re-armed when it fires early (cheaper than one per event).
- **Replies** wait for their outcome: a timer per reply fires once the watermark passes
  reply time + continue window + grace without a next message.
- **End**: ``session_ended`` usually comes from another producer (the client app) than
  the gateway's messages and replies, and may overtake them. So it is held (a
  PendingEnd) until the watermark passes its time + grace; messages stamped before it
  that arrive meanwhile still count, later ones are refused. An end already that late
  takes effect at once; only the first end counts.
- **Tombstone**: an ended conversation keeps a small tombstone for grace + continue
  window, so late events of it do not open a new one; then it is deleted.
- **Restore**: timers are not persisted; ``restore`` re-arms them from the entries.

What a processor does at each step (decide replies, summarise, emit samples) it passes
in as hooks. Timers are ``(due_ms, kind, key, arg)`` tuples on a heap per partition and
are checked when they fire (a stale timer is harmless).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any, Generic, Protocol, TypeVar

from streams.processors._base import Output, PartitionState, SourcePartition

Timer = tuple[int, str, str, str]
"""(due ms, kind, entry key, argument). Timers due at once fire in kind order: a pending
end first, then tombstone deletion, idle timeouts, replies."""

_END, _GC, _IDLE, _REPLY = "end", "gc", "idle", "reply"


@dataclass(slots=True)
class PendingEnd:
    """A ``session_ended`` waiting for the watermark to pass ``ts_ms`` + grace."""

    ts_ms: int
    reason: str


class _Timed(Protocol):
    @property
    def ts_ms(self) -> int: ...


class Conversation(Protocol):
    """What the lifecycle reads and writes of a processor's conversation state."""

    last_ms: int
    """Time of the last activity; the idle timeout counts from here."""
    ended_ms: int | None
    """When the conversation ended (it is a tombstone), None while open."""
    pending_end: PendingEnd | None

    @property
    def messages(self) -> Mapping[int, int]:
        """Turn → time of the user's message."""

    @property
    def replies(self) -> Mapping[str, _Timed]:
        """Request id → reply still waiting for its outcome."""

    def close(self, ended_ms: int) -> None:
        """Become the tombstone of a conversation that ended at ``ended_ms``."""


C = TypeVar("C", bound=Conversation)

Hook = Callable[[SourcePartition, PartitionState[Any], str, C, list[Output]], None]
"""(source, state, entry key, conversation, outputs) → None."""
ReplyHook = Callable[[SourcePartition, PartitionState[Any], str, C, str, list[Output]], None]
"""(source, state, entry key, conversation, request id, outputs) → None."""
EndHook = Callable[[SourcePartition, PartitionState[Any], str, C, int, str, list[Output]], None]
"""(source, state, entry key, conversation, end time, reason, outputs) → None."""


class ConversationLifecycle(Generic[C]):
    """Timers and end-of-life rules of the conversations (entries ``prefix + id``) of a
    processor's partitions. See the module docstring.

    Args:
        prefix: entry-key prefix of the conversations (``"s|"``, ``"c|"``).
        continue_window_ms, grace_ms, idle_ms: the processor's settings.
        on_reply_due: a reply's timer fired and the reply is still waiting; the hook
            decides it (and marks the entry changed).
        on_end: the conversation ends; the hook finalises what is open, then the
            lifecycle turns it into a tombstone.
        on_idle: the conversation timed out; the hook finalises what is open, then the
            lifecycle deletes it.
    """

    def __init__(
        self,
        prefix: str,
        *,
        continue_window_ms: int,
        grace_ms: int,
        idle_ms: int,
        on_reply_due: ReplyHook[C],
        on_end: EndHook[C],
        on_idle: Hook[C],
    ) -> None:
        self._prefix = prefix
        self._reply_wait = continue_window_ms + grace_ms
        self._grace = grace_ms
        self._idle_wait = idle_ms + grace_ms
        self._tombstone_ms = grace_ms + continue_window_ms
        self._on_reply_due, self._on_end, self._on_idle = on_reply_due, on_end, on_idle
        self.heaps: dict[SourcePartition, list[Timer]] = {}
        """Timers per partition. Processors may peek at ``heap[0]`` (once per event, a
        method call there was a measurable share of the processor's time)."""

    # -- partitions ------------------------------------------------------------------
    def restore(self, source: SourcePartition, state: PartitionState[Any]) -> None:
        """Re-arm the timers of ``source``'s conversations."""
        heap: list[Timer] = []
        for key, conv in state.entries.items():
            if not key.startswith(self._prefix):
                continue
            if conv.ended_ms is not None:
                heap.append((conv.ended_ms + self._tombstone_ms, _GC, key, ""))
                continue
            if conv.pending_end is not None:
                heap.append((conv.pending_end.ts_ms + self._grace, _END, key, ""))
            heap.append((conv.last_ms + self._idle_wait, _IDLE, key, ""))
            heap.extend((reply.ts_ms + self._reply_wait, _REPLY, key, req) for req, reply in conv.replies.items())
        heapify(heap)
        self.heaps[source] = heap

    def drop(self, source: SourcePartition) -> None:
        self.heaps.pop(source, None)

    # -- events ----------------------------------------------------------------------
    def opened(self, source: SourcePartition, key: str, ts_ms: int) -> None:
        """A new conversation's first event came at ``ts_ms``."""
        heappush(self.heaps[source], (ts_ms + self._idle_wait, _IDLE, key, ""))

    def awaiting(self, source: SourcePartition, key: str, request_id: str, reply_ms: int) -> None:
        """A reply stamped ``reply_ms`` waits for its outcome."""
        heappush(self.heaps[source], (reply_ms + self._reply_wait, _REPLY, key, request_id))

    @staticmethod
    def accepts_message(conv: Conversation, turn: int, ts_ms: int) -> bool:
        """A user message counts once, and only while the conversation is open: not after
        its end, nor when stamped after an end that is pending."""
        pending = conv.pending_end
        return conv.ended_ms is None and turn not in conv.messages and (pending is None or ts_ms <= pending.ts_ms)

    def end_event(
        self,
        source: SourcePartition,
        state: PartitionState[Any],
        key: str,
        conv: C,
        ts_ms: int,
        reason: str,
        out: list[Output],
    ) -> None:
        """``session_ended`` at ``ts_ms``: held until the watermark passes it + grace, or
        taking effect at once when it already has."""
        if conv.ended_ms is not None or conv.pending_end is not None:
            return  # the first end counts
        if ts_ms + self._grace <= state.meta.watermark_ms:
            self._end(source, state, key, conv, ts_ms, reason, out)
            return
        conv.pending_end = PendingEnd(ts_ms, reason)
        heappush(self.heaps[source], (ts_ms + self._grace, _END, key, ""))

    def fire(self, source: SourcePartition, state: PartitionState[Any], wm: int, out: list[Output]) -> None:
        """Act on every timer due at watermark ``wm``, in (due, kind, key, arg) order."""
        heap = self.heaps[source]
        entries = state.entries
        while heap and heap[0][0] <= wm:
            due, kind, key, arg = heappop(heap)
            conv = entries.get(key)
            if conv is None:
                continue
            if kind == _REPLY:
                reply = conv.replies.get(arg)
                if reply is not None and reply.ts_ms + self._reply_wait == due:
                    self._on_reply_due(source, state, key, conv, arg, out)
            elif kind == _END:
                pending = conv.pending_end
                if conv.ended_ms is None and pending is not None and pending.ts_ms + self._grace == due:
                    state.touch(key)
                    self._end(source, state, key, conv, pending.ts_ms, pending.reason, out)
            elif kind == _IDLE:
                if conv.ended_ms is not None or conv.pending_end is not None:
                    continue  # the end decides
                idle_due = conv.last_ms + self._idle_wait
                if idle_due > due:  # active since the timer was set
                    heappush(heap, (idle_due, _IDLE, key, ""))
                else:
                    self._on_idle(source, state, key, conv, out)
                    state.delete(key)
            elif kind == _GC and conv.ended_ms is not None and conv.ended_ms + self._tombstone_ms == due:
                state.delete(key)

    def _end(
        self,
        source: SourcePartition,
        state: PartitionState[Any],
        key: str,
        conv: C,
        ts_ms: int,
        reason: str,
        out: list[Output],
    ) -> None:
        self._on_end(source, state, key, conv, ts_ms, reason, out)
        # Keep a tombstone so late events of an ended conversation do not open a new one.
        conv.close(ts_ms)
        state.touch(key)
        heappush(self.heaps[source], (ts_ms + self._tombstone_ms, _GC, key, ""))
