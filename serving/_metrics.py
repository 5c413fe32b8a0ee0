"""Prometheus metrics of serving (default registry). Labels stay low-cardinality: model
(public name), arm (baseline|candidate), version (the few versions live at a time)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "flywheel_serving_requests_total",
    "Chat completion requests by outcome (ok, error, cancelled).",
    ["model", "arm", "version", "outcome"],
)
ERRORS = Counter(
    "flywheel_serving_errors_total", "Failed requests by error type.", ["model", "arm", "version", "error"]
)
RETRIES = Counter(
    "flywheel_serving_engine_retries_total", "Engine calls retried before the first byte.", ["model", "arm", "version"]
)
TTFT = Histogram(
    "flywheel_serving_ttft_seconds", "Time to first token.", ["model", "arm", "version"], buckets=_LATENCY_S
)
E2E = Histogram(
    "flywheel_serving_e2e_latency_seconds",
    "End-to-end request latency.",
    ["model", "arm", "version"],
    buckets=_LATENCY_S,
)
TOKENS = Counter(
    "flywheel_serving_tokens_total",
    "Tokens processed (kind = prompt | completion).",
    ["model", "arm", "version", "kind"],
)
IN_FLIGHT = Gauge("flywheel_serving_in_flight_requests", "Requests in flight.", ["model", "arm", "version"])
ADMISSION = Gauge(
    "flywheel_serving_admission_requests",
    "Requests admitted to the engine (state = running) and waiting for a slot (state = queued).",
    ["state"],
)
HTTP_ERRORS = Counter(
    "flywheel_serving_http_errors_total",
    "Error responses of the gateway by HTTP status and OpenAI error code (refusals included: "
    "context_length_exceeded, request_too_large, overloaded, invalid_api_key, deadline_exceeded).",
    ["status", "code"],
)
CANARY_SHARE = Gauge("flywheel_serving_canary_share_ratio", "Candidate share of users (0–1).", ["model"])
DECISIONS = Counter("flywheel_serving_canary_decisions_total", "Canary decisions by action.", ["model", "action"])
CANARY_LIFT = Gauge(
    "flywheel_serving_canary_lift", "Latest candidate − baseline estimate per metric.", ["model", "metric"]
)
CANARY_P = Gauge("flywheel_serving_canary_p_value", "Latest always-valid p-value per metric.", ["model", "metric"])
SRM_P = Gauge("flywheel_serving_canary_srm_p_value", "Latest sample-ratio-mismatch p-value.", ["model"])
SWAPS = Counter(
    "flywheel_serving_swaps_total",
    "Checkpoint loads by result (loaded, rejected, promoted, rolled_back, unloaded, reconciled).",
    ["model", "result"],
)
EVENTS_LOGGED = Counter("flywheel_serving_events_logged_total", "Chat events handed to the bus.", ["type"])
EVENTS_OVERFLOW = Counter(
    "flywheel_serving_event_buffer_overflow_total", "Chat events dropped because the buffer was full."
)
EVENTS_FAILED = Counter("flywheel_serving_events_failed_total", "Chat events the bus refused after retries.")
EVENT_BUFFER = Gauge("flywheel_serving_event_buffer_events", "Chat events waiting in the gateway's buffer.")
ROUTING_FALLBACKS = Counter(
    "flywheel_serving_routing_fallbacks_total",
    "Candidate-bucket requests refused with 503 because the candidate was not loaded here "
    "(never answered by the baseline: that would put them in the wrong arm).",
    ["model"],
)
LEADER = Gauge(
    "flywheel_serving_leader",
    "1 on the replica that leads the model's canary and hot-swap decisions, 0 on the others.",
    ["model"],
)
LEADER_TOKEN = Gauge("flywheel_serving_leader_token", "Fencing token of this replica's latest lease.", ["model"])
LEADER_CHANGES = Counter(
    "flywheel_serving_leader_changes_total", "Leases taken (acquired) and lost by this replica.", ["model", "change"]
)
STALE_WRITES = Counter(
    "flywheel_serving_stale_leader_writes_total",
    "Decisions of this replica that the shared store refused: a newer leader had fenced it out.",
    ["model"],
)
REPLICA_READY = Gauge(
    "flywheel_serving_replica_ready",
    "1 when this replica has loaded every version the routing state names (baseline and candidate).",
    ["model"],
)
ADMIN_ACTIONS = Counter(
    "flywheel_serving_admin_actions_total", "Admin API actions by action and result.", ["action", "result"]
)
