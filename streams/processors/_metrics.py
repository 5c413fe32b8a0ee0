"""Prometheus metrics of the processors (created on first use, never at import)."""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from prometheus_client import Counter, Gauge

from schemas import WindowCounters
from streams.processors._quality import style_of

K = TypeVar("K")


class ProcessorMetrics:
    def __init__(self) -> None:
        self.late_events = Counter(
            "flywheel_streams_processor_late_events_total",
            "Events that arrived after their event-time window closed (past grace); still applied to "
            "per-response and per-session state, not to the closed window.",
            ["processor"],
        )
        self.dropped = Counter(
            "flywheel_streams_processor_dropped_total",
            "Inputs or candidate outputs deliberately dropped, by reason.",
            ["processor", "reason"],
        )
        self.window_stat = Gauge(
            "flywheel_streams_processor_window_stat",
            "Latest closed event-time window per arm, summed over this process's partitions.",
            ["arm", "stat"],
        )
        self.window_version_stat = Gauge(
            "flywheel_streams_processor_window_version_stat",
            "Latest closed event-time window per arm and model version (responses, instruction_following, "
            "violations), summed over this process's partitions.",
            ["arm", "model_version", "stat"],
        )
        self.samples = Counter(
            "flywheel_streams_processor_samples_total", "Training samples emitted, by kind.", ["kind"]
        )
        self.jobs = Counter(
            "flywheel_streams_processor_jobs_triggered_total",
            "Training jobs requested, by kind and trigger.",
            ["kind", "trigger"],
        )
        self.style = Gauge(
            "flywheel_streams_processor_style_stat",
            "Style artefacts of emitted samples per stream (running means): words, emoji, questions, stock phrases.",
            ["stream", "stat"],
        )


@lru_cache(maxsize=1)
def processor_metrics() -> ProcessorMetrics:
    return ProcessorMetrics()


class StyleStats:
    """Running means of the style artefacts (``style_of``) of every emitted sample stream,
    exported as ``flywheel_streams_processor_style_stat``."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self._metrics = metrics
        self._sums: dict[str, dict[str, float]] = {}

    def observe(self, stream: str, text: str) -> None:
        sums = self._sums.setdefault(stream, {"n": 0.0})
        sums["n"] += 1
        for stat, v in style_of(text).items():
            sums[stat] = sums.get(stat, 0.0) + v
            self._metrics.style.labels(stream, stat).set(sums[stat] / sums["n"])

    def means(self) -> dict[str, dict[str, float]]:
        return {
            s: {k: v / sums["n"] for k, v in sums.items() if k != "n"} | {"samples": sums["n"]}
            for s, sums in self._sums.items()
        }


class WindowGauges:
    """``window_stat`` and ``window_version_stat``: the latest closed window per arm (and
    per arm and model version), summed over this process's partitions. Every gauge counter
    of WindowCounters and every rate it declares."""

    VERSION_STATS = ("responses", "instruction_following", "violations")
    """Exported per model version too: the guardrails are judged per version."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self._metrics = metrics
        self._stats = WindowCounters.gauge_names()
        self._by_arm: dict[str, tuple[int, WindowCounters]] = {}
        self._by_version: dict[tuple[str, str], tuple[int, WindowCounters]] = {}

    def observe(self, arm: str, model_version: str, start_ms: int, counts: WindowCounters) -> None:
        """A window of ``arm`` and ``model_version`` starting at ``start_ms`` closed with ``counts``."""
        sums = _latest(self._by_version, (arm, model_version), start_ms)
        if sums is not None:
            sums.add(counts)
            for name in self.VERSION_STATS:
                self._metrics.window_version_stat.labels(arm, model_version, name).set(getattr(sums, name))
        sums = _latest(self._by_arm, arm, start_ms)
        if sums is None:
            return
        sums.add(counts)
        gauge = self._metrics.window_stat
        for name in self._stats:
            gauge.labels(arm, name).set(getattr(sums, name))
        for rate in WindowCounters.rates():
            value = rate.value(sums)
            if value is not None:
                gauge.labels(arm, rate.name).set(value)


def _latest(latest: dict[K, tuple[int, WindowCounters]], key: K, start_ms: int) -> WindowCounters | None:
    """The running sums of the latest window of ``key`` (new ones when ``start_ms`` is
    later), or None for an earlier window."""
    prev = latest.get(key)
    if prev is None or prev[0] < start_ms:
        prev = latest[key] = (start_ms, WindowCounters())
    elif prev[0] > start_ms:
        return None
    return prev[1]
