"""Chat-event ids stay unique across processes forked from one gateway."""

from __future__ import annotations

import multiprocessing
from typing import Any

from serving.gateway.turn_events import event_id


def _ids_in_child(queue: Any) -> None:
    queue.put([str(event_id()) for _ in range(3)])


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_ids_in_child, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    ours = [str(event_id()) for _ in range(3)]  # what the child would have drawn, had it kept our state
    assert not set(theirs) & set(ours)
