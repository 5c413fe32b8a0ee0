"""What the simulator saw: per reply records and per model-version counters."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from schemas import FeedbackKind, WindowCounters


@dataclass(frozen=True)
class TurnRecord:
    """One reply as a user saw it, and what the user did next."""

    day: int
    user_id: str
    conversation_id: str
    character_id: str
    turn: int
    model_version: str
    arm: str | None
    regenerated: bool
    follows_instructions: bool
    violation: bool
    p_continue: float
    continued: bool
    regenerate: bool
    feedback: tuple[FeedbackKind, ...]
    latency_ms: float = 0.0
    reply_words: int = 0


@dataclass(slots=True)
class VersionStats(WindowCounters):
    """What the simulated users did with one model version, counted like the platform's
    window counters (so the rates are the same definitions), plus what only the simulator
    knows. Distinct-user counts and the latency histogram are not kept per version: they
    stay 0. Additive, so they merge across runs."""

    regenerations: int = 0
    reply_words: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    reports: int = 0
    p_continue_sum: float = 0.0

    @property
    def replies(self) -> int:
        """Replies the users saw (``responses``)."""
        return self.responses

    @property
    def mean_latency_ms(self) -> float:
        """Mean time from request to the whole reply, as the users' client measured it."""
        return self.latency_ms_sum / self.responses if self.responses else 0.0

    @property
    def mean_reply_words(self) -> float:
        return self.reply_words / self.responses if self.responses else 0.0


@dataclass
class SimStats:
    """Running totals of a simulation, thread-safe to read while it runs."""

    requests: int = 0
    errors: int = 0
    context_full: int = 0  # sessions ended because the conversation outgrew the model's context
    sessions_started: int = 0
    sessions_ended: int = 0
    events_emitted: int = 0
    days_opened: int = 0
    visits_by_day: dict[int, int] = field(default_factory=dict)
    by_version: dict[str, VersionStats] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, r: TurnRecord) -> None:
        with self._lock:
            v = self.by_version.setdefault(r.model_version, VersionStats())
            v.responses += 1
            v.continued += r.continued
            v.instruction_following += r.follows_instructions
            v.violations += r.violation
            v.regenerations += r.regenerate
            v.p_continue_sum += r.p_continue
            v.latency_ms_sum += r.latency_ms
            v.reply_words += r.reply_words
            v.thumbs_up += FeedbackKind.THUMBS_UP in r.feedback
            v.thumbs_down += FeedbackKind.THUMBS_DOWN in r.feedback
            v.reports += FeedbackKind.REPORT in r.feedback

    def session_ended(self, model_version: str | None, user_turns: int) -> None:
        with self._lock:
            self.sessions_ended += 1
            if model_version is not None:
                v = self.by_version.setdefault(model_version, VersionStats())
                v.sessions += 1
                v.user_turns += user_turns

    def version(self, model_version: str) -> VersionStats:
        with self._lock:
            return copy.deepcopy(self.by_version.get(model_version, VersionStats()))
