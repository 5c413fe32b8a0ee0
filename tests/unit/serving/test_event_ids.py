"""Chat-event ids stay unique across processes forked from one gateway."""

from __future__ import annotations

import os

from serving.gateway.turn_events import event_id


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: three ids down the pipe, then out at once (no cleanup of the parent's state)
        os.write(write_end, " ".join(str(event_id()) for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        theirs = pipe.read().split()
    os.waitpid(pid, 0)
    ours = [str(event_id()) for _ in range(3)]  # what the child would have drawn, had it kept our state
    assert len(theirs) == 3 and not set(theirs) & set(ours)
