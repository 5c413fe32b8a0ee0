"""The user half of the signals processor: each user's continue rate before the current
experiment, the covariate of the canary's CUPED adjustment.

The processor does not know when the canary opened; it sees it in the events: the first
reply or ``session_started`` of a candidate version it has not seen before starts an
experiment (``SignalsMeta.experiments``). A user's replies decided before that moment
are the pre-period; those after it wait in the history and join the pre-period of the
next experiment. So the covariate of a reply never depends on the arm the reply's user
was assigned to: a valid CUPED covariate. ``chat.events`` is keyed by user, so a user's
history lives in one partition.

Entries ``u|<user id>`` (:class:`UserHistory`) are forgotten ``user_history_s`` (event
time) after the user's last decided reply; an index per partition keeps them in the
order of that time, so forgetting costs nothing for the users who stay.
"""

from __future__ import annotations

from schemas import ModelResponseEvent, SessionStartedEvent
from streams.processors._base import PartitionState, SourcePartition
from streams.processors._signals_state import SignalsMeta, UserHistory

State = PartitionState[SignalsMeta]

KEEP_EXPERIMENTS = 16
"""Candidate versions remembered per partition (older ones cannot come back as new)."""

PRIOR_REPLIES = 2.0
"""Pseudo-replies at a continue rate of 1/2 in each covariate, so that a user with one
pre-period reply gets 1/3 or 2/3 rather than 0 or 1, and a new user 1/2."""


def user_key(user_id: str) -> str:
    return "u|" + user_id


def covariate(history: UserHistory | None) -> float:
    """A user's pre-period continue rate, shrunk towards 1/2 by PRIOR_REPLIES."""
    if history is None:
        return 0.5
    return (history.pre_continued + PRIOR_REPLIES / 2) / (history.pre_replies + PRIOR_REPLIES)


class UserHistories:
    """Per-user pre-period histories of every owned partition."""

    def __init__(self, keep_ms: int) -> None:
        self._keep_ms = keep_ms
        self._by_time: dict[SourcePartition, dict[str, None]] = {}
        """Per partition: user entry keys in the order of their last decided reply."""

    def restore(self, source: SourcePartition, state: State) -> None:
        users = sorted((h.last_ms, k) for k, h in state.entries.items() if k.startswith("u|"))
        self._by_time[source] = dict.fromkeys(k for _, k in users)

    def drop(self, source: SourcePartition) -> None:
        self._by_time.pop(source, None)

    def saw(self, state: State, event: ModelResponseEvent | SessionStartedEvent, t: int) -> None:
        """Note a candidate version: the first time one shows up, a new experiment starts."""
        if event.arm != "candidate":
            return
        experiments = state.meta.experiments
        if event.model_version in experiments:
            return
        experiments[event.model_version] = t
        while len(experiments) > KEEP_EXPERIMENTS:
            del experiments[min(experiments, key=experiments.__getitem__)]

    def decided(self, source: SourcePartition, state: State, user_id: str, continued: bool, decided_ms: int) -> float:
        """Record one decided reply of ``user_id``; returns its covariate (from before it)."""
        key = user_key(user_id)
        history: UserHistory | None = state.entries.get(key)
        if history is None:
            history = UserHistory()
            state.entries[key] = history
        start = state.meta.experiment_ms
        if history.split_ms < start:  # a new experiment: everything so far is its pre-period
            history.pre_replies += history.replies
            history.pre_continued += history.continued
            history.replies = history.continued = 0
            history.split_ms = start
        x = covariate(history)
        history.replies += 1
        history.continued += continued
        history.last_ms = max(history.last_ms, decided_ms)
        state.dirty.add(key)
        index = self._by_time[source]
        index.pop(key, None)
        index[key] = None
        return x

    def forget(self, source: SourcePartition, state: State, wm: int) -> None:
        """Delete the histories of users with no decided reply since ``wm`` - user_history_s."""
        index = self._by_time[source]
        horizon = wm - self._keep_ms
        while index:
            key = next(iter(index))
            history: UserHistory | None = state.entries.get(key)
            if history is not None and history.last_ms >= horizon:
                return
            del index[key]
            state.delete(key)
