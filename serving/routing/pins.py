"""Conversation pinning: a conversation stays on the version it started on.

When a canary opens or advances, talks under way must not jump arms mid-conversation:
their late turns would be credited to the new arm and bias its per-response metrics. So
each replica remembers, per conversation id, the version that served its first turn, and
keeps routing later turns there while that version is still deployed and loaded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from schemas import DeploymentState
from serving.routing.assignment import Route


class ConversationPins:
    """Conversation id → version it started on, least recently used forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._versions: OrderedDict[str, str] = OrderedDict()

    def route(
        self,
        state: DeploymentState,
        conversation_id: str | None,
        turn: int,
        is_ready: Callable[[str], bool],
    ) -> Route | None:
        """The pinned route of a later turn, or None when the caller is to be routed afresh
        (first turn, unknown conversation, or its version retired or not loaded here)."""
        if not conversation_id or turn <= 1:
            return None
        pinned = self._versions.get(conversation_id)
        if pinned is None or not is_ready(pinned):
            return None
        if pinned == state.baseline_version:
            return Route(state.model, "baseline", pinned)
        if pinned == state.candidate_version:
            return Route(state.model, "candidate", pinned)
        return None

    def pin(self, conversation_id: str | None, version: str) -> None:
        if not conversation_id:
            return
        self._versions[conversation_id] = version
        self._versions.move_to_end(conversation_id)
        if len(self._versions) > self.capacity:
            self._versions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._versions)
