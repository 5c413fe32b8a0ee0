"""Prometheus metrics of the processors (created on first use, never at import)."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge


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
