"""Window counters: the additive counts of one arm and model version over one event-time
window, and the rates derived from them.

One class, :class:`WindowCounters`, declares every counter. Everything else is derived
from its fields: the counter fields of the ``ArmWindowAggregate`` message (same names,
same order, descriptions from here), the signals processor's per-window state and
gauges, and the canary's per-arm totals (``serving.canary.ArmTotals`` subclasses it).
A new counter is one field here, declared with :func:`counter`, plus the line in the
signals processor that counts it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Self, overload

LATENCY_BUCKETS_MS: tuple[float, ...] = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, float("inf"))
"""Upper bounds of the latency histogram carried by window aggregates (cumulative = no)."""


def counter(description: str, *, default: float = 0, gauge: bool = True) -> Any:
    """A counter field of :class:`WindowCounters` (or of a subclass).

    Args:
        description: what it counts, in words a consumer in another language can read
            (it becomes the field's description in the JSON Schema).
        default: 0, or 0.0 for a float sum.
        gauge: export it as ``flywheel_streams_processor_window_stat{stat=<name>}``; off for
            sums that mean nothing on their own (sums of squares, latency sums).
    """
    return field(default=default, metadata=counter_metadata(description, gauge=gauge))


def counter_metadata(description: str, *, gauge: bool = True) -> dict[str, Any]:
    """The field metadata that makes a field a counter (see :func:`counter`)."""
    return {"counter": True, "description": description, "gauge": gauge}


def _no_latencies() -> list[int]:
    return [0] * len(LATENCY_BUCKETS_MS)


class Rate:
    """A rate derived from two counters, ``numerator / denominator`` (0.0 while the
    denominator is 0). Declared once on :class:`EngagementRates`, read as a float attribute."""

    __slots__ = ("denominator", "name", "numerator")

    def __init__(self, numerator: str, denominator: str) -> None:
        self.numerator, self.denominator = numerator, denominator
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Rate: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> float: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> Rate | float:
        if obj is None:
            return self
        value = self.value(obj)
        return 0.0 if value is None else value

    def value(self, obj: object) -> float | None:
        """The rate of ``obj``'s counters, or None while its denominator is 0."""
        den = getattr(obj, self.denominator)
        return getattr(obj, self.numerator) / den if den else None


class EngagementRates:
    """The rates of a set of window counters, each declared once. Mixed into
    :class:`WindowCounters` (so the canary's totals and the simulator's per-version counts
    have them) and into ``ArmWindowAggregate``."""

    __slots__ = ()

    continue_rate = Rate("continued", "responses")
    instruction_following_rate = Rate("instruction_following", "responses")
    violation_rate = Rate("violations", "responses")
    mean_depth = Rate("user_turns", "sessions")
    breadth = Rate("users_engaged", "users_active")

    @classmethod
    def rates(cls) -> Iterator[Rate]:
        """Every rate declared on the class, in declaration order."""
        seen: set[str] = set()
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Rate) and name not in seen:
                    seen.add(name)
                    yield value


@dataclass(slots=True)
class WindowCounters(EngagementRates):
    """Additive counts of one arm and model version over one tumbling event-time window.

    Every field is a sum, so partials of several source partitions (and windows) merge
    by addition (:meth:`add`); distinct-user counts add up exactly because
    ``chat.events`` is keyed by user. Attribution: sessions count in the window of their
    end; reply outcomes in the window of the moment they were decided; users assigned at
    ``session_started``; users engaged at each user message.
    """

    sessions: int = counter("Sessions on this arm that ended in the window.")
    users_assigned: int = counter(
        "Distinct users whose session on this arm started in the window (the sample-ratio check counts these)."
    )
    users_engaged: int = counter("Distinct users who sent a message on this arm in the window.")
    users_active: int = counter(
        "Distinct users with any event of a session on this arm in the window "
        "(started, wrote, or got a reply); the denominator of breadth, so breadth <= 1."
    )
    user_turns: int = counter("User messages of the sessions counted in `sessions` (depth = user_turns / sessions).")
    user_turns_sq: int = counter("Sum over sessions of user_turns squared.", gauge=False)
    responses: int = counter("Replies whose outcome was decided in the window.")
    continued: int = counter("Of `responses`, those the user continued within the continue window.")
    instruction_following: int = counter("Of `responses`, those that followed the character's instructions.")
    violations: int = counter("Of `responses`, those that broke the content policy.")
    latency_ms_sum: float = counter("Sum of the latencies of `responses`, in milliseconds.", default=0.0, gauge=False)
    latency_buckets: list[int] = field(
        default_factory=_no_latencies,
        metadata=counter_metadata("Counts of `responses` per LATENCY_BUCKETS_MS bucket.", gauge=False),
    )
    late_events: int = counter(
        "Events of this arm that arrived after their window had closed (counted in the next emitted window).",
        gauge=False,
    )
    # Per-session sums for cluster-robust (delta-method) variances of the per-reply rates:
    # replies of one conversation are not independent, so the canary takes sessions as the
    # units. Each session adds its totals once, in the window of its end (where `sessions`
    # counts it), so these add up exactly across windows and partitions.
    session_replies: int = counter(
        "Replies decided in the sessions counted in `sessions` (n per session, summed).", gauge=False
    )
    session_replies_sq: int = counter("Sum over those sessions of n squared.", gauge=False)
    session_continued: int = counter("Continued replies of those sessions (c per session, summed).", gauge=False)
    session_continued_sq: int = counter("Sum over those sessions of c squared.", gauge=False)
    session_continued_x_replies: int = counter("Sum over those sessions of c times n.", gauge=False)
    session_violations: int = counter("Replies of those sessions that broke the content policy.", gauge=False)
    session_violations_sq: int = counter("Sum over those sessions of their violations squared.", gauge=False)
    session_violations_x_replies: int = counter("Sum over those sessions of violations times n.", gauge=False)
    session_instruction_following: int = counter(
        "Replies of those sessions that followed the character's instructions.", gauge=False
    )
    session_instruction_following_sq: int = counter(
        "Sum over those sessions of their instruction-following replies squared.", gauge=False
    )
    session_instruction_following_x_replies: int = counter(
        "Sum over those sessions of instruction-following replies times n.", gauge=False
    )
    session_latency_tail: list[int] = field(
        default_factory=_no_latencies,
        metadata=counter_metadata(
            "Per LATENCY_BUCKETS_MS bucket b: replies of those sessions slower than bucket b "
            "(in a later bucket), summed over the sessions.",
            gauge=False,
        ),
    )
    session_latency_tail_sq: list[int] = field(
        default_factory=_no_latencies,
        metadata=counter_metadata("Per bucket b: the sum over sessions of that tail count squared.", gauge=False),
    )
    session_latency_tail_x_replies: list[int] = field(
        default_factory=_no_latencies,
        metadata=counter_metadata("Per bucket b: the sum over sessions of that tail count times n.", gauge=False),
    )
    # CUPED: each reply's covariate is its user's continue rate before the experiment began
    # (the pre-period, see streams.processors._signals_users).
    covariate_sum: float = counter(
        "Sum over `responses` of each reply's covariate: its user's pre-period continue rate.",
        default=0.0,
        gauge=False,
    )
    session_covariate: float = counter(
        "Sum over the sessions counted in `sessions` of a, the sum of their replies' covariates.",
        default=0.0,
        gauge=False,
    )
    session_covariate_sq: float = counter("Sum over those sessions of a squared.", default=0.0, gauge=False)
    session_covariate_x_replies: float = counter("Sum over those sessions of a times n.", default=0.0, gauge=False)
    session_covariate_x_continued: float = counter("Sum over those sessions of a times c.", default=0.0, gauge=False)

    @classmethod
    def counter_fields(cls) -> tuple[Field[Any], ...]:
        """The counter fields of ``cls`` (a subclass may add some), in declaration order."""
        return _counter_fields(cls)

    @classmethod
    def counter_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in _counter_fields(cls))

    @classmethod
    def gauge_names(cls) -> tuple[str, ...]:
        """The scalar counters exported as gauges."""
        return tuple(f.name for f in _counter_fields(cls) if f.metadata["gauge"])

    def add(self, other: WindowCounters) -> None:
        """Add ``other``'s counters to these, field by field (histograms bucket by bucket)."""
        for name in type(self).counter_names():
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, list):
                for i, count in enumerate(theirs[: len(mine)]):
                    mine[i] += count
            else:
                setattr(self, name, mine + theirs)

    @classmethod
    def from_fields(cls, values: Mapping[str, Any]) -> Self:
        """Counters from a mapping of counter name → value (histograms as any sequence);
        other keys are ignored, missing counters are 0."""
        counts: dict[str, Any] = {}
        for name in cls.counter_names():
            if name in values:
                value = values[name]
                counts[name] = list(value) if isinstance(value, tuple | list) else value
        return cls(**counts)

    def as_fields(self) -> dict[str, Any]:
        """Counter name → value (histograms as tuples: the message's field types)."""
        return {
            name: tuple(value) if isinstance(value, list) else value
            for name in type(self).counter_names()
            for value in (getattr(self, name),)
        }


_FIELDS: dict[type, tuple[Field[Any], ...]] = {}
"""Counter fields per class: a class's fields never change, and add() and from_fields()
ask for them at every call (the canary's looks, the processor's window closes)."""


def _counter_fields(cls: type[WindowCounters]) -> tuple[Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(f for f in fields(cls) if f.metadata.get("counter"))
    return found


def default_of(f: Field[Any]) -> Any:
    """A dataclass field's default value (calling its factory)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"counter {f.name} has no default; give it one with counter()")
