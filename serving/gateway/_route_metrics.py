"""Metric children of one (model, arm, version), looked up once instead of per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving import _metrics as m
from serving.routing import Route


@dataclass(frozen=True)
class RouteMetrics:
    """Metric children of one (model, arm, version), looked up once instead of per request."""

    ok: Any
    cancelled: Any
    error: Any
    ttft: Any
    e2e: Any
    prompt_tokens: Any
    completion_tokens: Any
    in_flight: Any

    @classmethod
    def of(cls, r: Route) -> RouteMetrics:
        labels = (r.model, r.arm, r.version)
        return cls(
            m.REQUESTS.labels(*labels, "ok"),
            m.REQUESTS.labels(*labels, "cancelled"),
            m.REQUESTS.labels(*labels, "error"),
            m.TTFT.labels(*labels),
            m.E2E.labels(*labels),
            m.TOKENS.labels(*labels, "prompt"),
            m.TOKENS.labels(*labels, "completion"),
            m.IN_FLIGHT.labels(*labels),
        )


_route_metrics: dict[Route, RouteMetrics] = {}


def route_metrics(r: Route) -> RouteMetrics:
    found = _route_metrics.get(r)
    if found is None:
        if len(_route_metrics) > 1000:  # versions come and go; never grow without bound
            _route_metrics.clear()
        found = _route_metrics[r] = RouteMetrics.of(r)
    return found
