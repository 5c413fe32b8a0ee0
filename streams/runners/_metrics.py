"""Prometheus metrics of the runners (created on first use, never at import)."""

from __future__ import annotations

import threading
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from streams.bus import Consumer

_server_lock = threading.Lock()
_server_ports: set[int] = set()


class RunnerMetrics:
    def __init__(self) -> None:
        self.events_in = Counter(
            "flywheel_streams_processor_events_in_total",
            "Records consumed by a stream processor.",
            ["processor", "runner"],
        )
        self.events_out = Counter(
            "flywheel_streams_processor_events_out_total",
            "Records produced by a stream processor, by base topic.",
            ["processor", "topic"],
        )
        self.dlq = Counter(
            "flywheel_streams_processor_dlq_total",
            "Records sent to the dead-letter topic, by reason.",
            ["processor", "reason"],
        )
        self.misrouted = Counter(
            "flywheel_streams_processor_misrouted_total",
            "Records whose key hashes to another partition than the one they were read from "
            "(their producer used another partitioner); dead-lettered.",
            ["processor", "topic"],
        )
        self.latency = Histogram(
            "flywheel_streams_processor_latency_seconds",
            "Processing time per record (mean over each consumed batch).",
            ["processor"],
            buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1),
        )
        self.lag = Gauge(
            "flywheel_streams_processor_consumer_lag",
            "Records not yet consumed on the assigned partitions (high watermark - position).",
            ["processor"],
        )
        self.commit_failures = Counter(
            "flywheel_streams_processor_commit_failures_total",
            "Failed commits or transactions (the batch is rewound and replayed).",
            ["processor", "stage"],
        )
        self.commits = Counter(
            "flywheel_streams_processor_commits_total", "Committed transactions / offset commits.", ["processor"]
        )


@lru_cache(maxsize=1)
def runner_metrics() -> RunnerMetrics:
    return RunnerMetrics()


def serve_metrics(port: int) -> None:
    """Expose /metrics on ``port`` once per process (0 = do not serve)."""
    if port <= 0:
        return
    with _server_lock:
        if port not in _server_ports:
            start_http_server(port)
            _server_ports.add(port)


def consumer_lag(consumer: Consumer) -> int:
    """Records not yet consumed on ``consumer``'s assigned partitions (high watermark - position).

    Raises:
        StreamError: the broker could not be asked.
    """
    assigned = consumer.assignment()
    positions = consumer.position(assigned)
    lag = 0
    for tp in assigned:
        # The high watermark of the last fetch: a broker round trip per partition here
        # cost ~30 ms each, a tenth of the transactional runner's time.
        _, high = consumer.watermarks(tp, cached=True)
        if high >= 0:
            lag += max(0, high - positions.get(tp, high))
    return lag
