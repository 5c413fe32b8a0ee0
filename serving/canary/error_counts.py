"""Request and error counts for the error-rate guardrail.

Each replica counts its own requests in Prometheus (``flywheel_serving_requests_total``).
The guardrail must see the whole fleet, so every replica adds what it counted since its
last flush to shared counters in the routing store (``RequestCountPublisher``), and the
leader reads their sums (``fleet_error_counts``). Flushing off the request path costs no
Redis round trip per request; a replica that dies loses at most one flush interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import REGISTRY

from schemas import FlywheelError
from serving import _metrics as m
from serving.routing import RequestKey, RoutingStore

log = logging.getLogger(__name__)

ErrorCounts = Callable[[str, str], tuple[int, int]]
"""(arm, version) → (requests, errors), counted from a fixed origin (monotonic)."""

_OUTCOMES = ("ok", "error", "cancelled")


def _requests_and_errors(counts: Callable[[str], float]) -> tuple[int, int]:
    total = errors = 0.0
    for outcome in _OUTCOMES:
        value = counts(outcome)
        total += value
        if outcome == "error":
            errors += value
    return int(total), int(errors)


def gateway_error_counts(model: str) -> ErrorCounts:
    """Error counts from this process's gateway metrics (the embedded, one-process setup)."""

    def counts(arm: str, version: str) -> tuple[int, int]:
        return _requests_and_errors(
            lambda outcome: (
                REGISTRY.get_sample_value(
                    "flywheel_serving_requests_total",
                    {"model": model, "arm": arm, "version": version, "outcome": outcome},
                )
                or 0.0
            )
        )

    return counts


def fleet_error_counts(store: RoutingStore, model: str) -> ErrorCounts:
    """Error counts of every replica, from the shared counters."""

    def counts(arm: str, version: str) -> tuple[int, int]:
        shared = store.request_counts(model)
        return _requests_and_errors(lambda outcome: shared.get((arm, version, outcome), 0))

    return counts


def local_request_counts(model: str) -> dict[RequestKey, int]:
    """This process's request counts of ``model`` by (arm, version, outcome)."""
    out: dict[RequestKey, int] = {}
    for metric in m.REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("model") == model:
                key = (sample.labels["arm"], sample.labels["version"], sample.labels["outcome"])
                out[key] = int(sample.value)
    return out


class RequestCountPublisher:
    """Adds this replica's new request counts to the shared ones every ``interval_s``."""

    def __init__(self, store: RoutingStore, model: str, interval_s: float = 1.0) -> None:
        self.store = store
        self.model = model
        self.interval_s = interval_s
        self._sent: dict[RequestKey, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self) -> None:
        now = local_request_counts(self.model)
        deltas = {k: v - self._sent.get(k, 0) for k, v in now.items() if v != self._sent.get(k, 0)}
        self.store.add_request_counts(self.model, deltas)  # raises: nothing is marked sent
        self._sent = now

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="request-counts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.flush()
            except FlywheelError as exc:  # Redis away: the counts go with the next flush
                log.warning("request counts not shared: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self.flush()
        except FlywheelError as exc:
            log.warning("last request counts not shared: %s", exc)
