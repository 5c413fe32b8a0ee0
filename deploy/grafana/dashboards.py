"""Generate the Grafana dashboards in deploy/grafana/dashboards/ from one compact spec.

    python deploy/grafana/dashboards.py          # rewrite the JSON files
    python deploy/grafana/dashboards.py --check  # exit 1 if a JSON file differs from the spec

Every expression uses only metrics the platform exports (flywheel_<part>_<what>_<unit>);
tests/unit/deploy checks the names against the code and tests/integration/deploy runs every
expression against a real Prometheus scraping real processes.
Ratios are built from counts summed over all processes (sum(a) / sum(b)), never by
averaging per-process ratios, so they stay right when processors are scaled out.
Counts of rare events ("since start") are the counters themselves: increase() over a range
misses an event that creates its labelled series (the series is born at 1).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "flywheel-prometheus"}
RI = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


def p(
    title: str,
    *targets: tuple[str, str],
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    width: int = 8,
    **extra: Any,
) -> Panel:
    return Panel(title, targets, unit, kind, description, width, extra)


def window_ratio(num: str, den: str) -> str:
    """Per-arm ratio of two window counts of the signals processor, over all processes."""
    stat = "flywheel_streams_processor_window_stat"
    return f'sum by (arm) ({stat}{{stat="{num}"}}) / sum by (arm) ({stat}{{stat="{den}"}})'


def version_ratio(num: str) -> str:
    """Per-arm-and-version share of responses of the signals processor's latest windows."""
    stat = "flywheel_streams_processor_window_version_stat"
    return (
        f'sum by (arm, model_version) ({stat}{{stat="{num}"}}) '
        f'/ sum by (arm, model_version) ({stat}{{stat="responses"}})'
    )


def quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RI}])))"


def rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{selector}[{RI}]))"


# --- serving --------------------------------------------------------------------------------
REQ = "flywheel_serving_requests_total"
# "or … * 0": an arm with traffic and no failure shows 0 %, not "no data".
_ERRORS_PER_ARM = rate(REQ, "arm", '{outcome="error"}')
SERVING_ERROR_RATIO = f"({_ERRORS_PER_ARM} or {rate(REQ, 'arm')} * 0) / {rate(REQ, 'arm')}"

SERVING_TRAFFIC = [
    p("Requests/s per arm and outcome", (rate(REQ, "arm, outcome"), "{{arm}} {{outcome}}"), unit="reqps"),
    p(
        "Error ratio per arm",
        (SERVING_ERROR_RATIO, "{{arm}}"),
        unit="percentunit",
        description="Share of chat completions that failed, per arm (alert: FlywheelGatewayErrorRateHigh).",
    ),
    p(
        "Errors/s per arm and type",
        (f"{rate('flywheel_serving_errors_total', 'arm, error')} or {rate(REQ, 'arm')} * 0", "{{arm}} {{error}}"),
        unit="reqps",
        description="By exception type; an arm with traffic and no failure shows 0.",
    ),
]
SERVING_LATENCY = [
    p(
        "Time to first token p50 / p95 per arm",
        (quantile(0.5, "flywheel_serving_ttft_seconds", "arm"), "p50 {{arm}}"),
        (quantile(0.95, "flywheel_serving_ttft_seconds", "arm"), "p95 {{arm}}"),
        unit="s",
    ),
    p(
        "End-to-end latency p50 / p95 / p99 per arm",
        (quantile(0.5, "flywheel_serving_e2e_latency_seconds", "arm"), "p50 {{arm}}"),
        (quantile(0.95, "flywheel_serving_e2e_latency_seconds", "arm"), "p95 {{arm}}"),
        (quantile(0.99, "flywheel_serving_e2e_latency_seconds", "arm"), "p99 {{arm}}"),
        unit="s",
    ),
    p("Tokens/s per arm", (rate("flywheel_serving_tokens_total", "arm, kind"), "{{arm}} {{kind}}")),
    p(
        "Requests in flight per version",
        ("sum by (arm, version) (flywheel_serving_in_flight_requests)", "{{arm}} {{version}}"),
    ),
    p(
        "Engine retries/s (before first byte)",
        (f"sum (rate(flywheel_serving_engine_retries_total[{RI}])) or vector(0)", "retries"),
        unit="reqps",
    ),
    p(
        "Routing fallbacks/s",
        (f"sum (rate(flywheel_serving_routing_fallbacks_total[{RI}])) or vector(0)", "fallbacks"),
        unit="reqps",
        description="Candidate-arm requests served by the baseline because this replica had not loaded the candidate.",
    ),
]
SERVING_EVENTS = [
    p("Chat events logged/s by type", (rate("flywheel_serving_events_logged_total", "type"), "{{type}}"), unit="ops"),
    p("Event buffer fill", ("sum (flywheel_serving_event_buffer_events)", "buffered")),
    p(
        "Events dropped or refused/s",
        (f"sum (rate(flywheel_serving_event_buffer_overflow_total[{RI}]))", "buffer overflow"),
        (f"sum (rate(flywheel_serving_events_failed_total[{RI}]))", "refused by bus"),
        unit="ops",
        description="Lost chat events bias every engagement number (alert: FlywheelGatewayEventBufferOverflow).",
    ),
]
CANARY = [
    p(
        "Candidate share of users",
        ("max by (model) (flywheel_serving_canary_share_ratio)", "{{model}}"),
        unit="percentunit",
        description="The canary's current traffic step (0 = no candidate, 1 = promoted).",
    ),
    p(
        "Canary decisions (since start)",
        ("sum by (action) (flywheel_serving_canary_decisions_total)", "{{action}}"),
        kind="stat",
    ),
    p("Checkpoint swaps (since start)", ("sum by (result) (flywheel_serving_swaps_total)", "{{result}}"), kind="stat"),
    p("Candidate lift per metric", ("max by (metric) (flywheel_serving_canary_lift)", "{{metric}}")),
    p("Always-valid p-value per metric", ("min by (metric) (flywheel_serving_canary_p_value)", "{{metric}}")),
    p(
        "Sample-ratio-mismatch p-value",
        ("min by (model) (flywheel_serving_canary_srm_p_value)", "{{model}}"),
        description="Below 0.001 the split is broken and the experiment halts (alert: FlywheelCanarySampleRatioMismatch).",
    ),
    p(
        "Operator actions (since start)",
        ("sum by (action, result) (flywheel_serving_admin_actions_total)", "{{action}} {{result}}"),
        kind="stat",
        description="pause / resume / promote / rollback through the admin API; refused = not allowed in that state.",
    ),
]

# --- engagement (signals processor windows) ------------------------------------------------
ENGAGEMENT = [
    p(
        "Breadth per arm (users engaged / active)",
        (window_ratio("users_engaged", "users_active"), "{{arm}}"),
        unit="percentunit",
    ),
    p("Depth per arm (user turns / session)", (window_ratio("user_turns", "sessions"), "{{arm}}")),
    p("Continue rate per arm", (window_ratio("continued", "responses"), "{{arm}}"), unit="percentunit"),
    p(
        "Instruction-following rate per arm",
        (window_ratio("instruction_following", "responses"), "{{arm}}"),
        unit="percentunit",
    ),
    p(
        "Violation rate per arm",
        (window_ratio("violations", "responses"), "{{arm}}"),
        unit="percentunit",
        description="Alert FlywheelViolationRateHigh fires above 5 % in any arm.",
    ),
    p(
        "Instruction-following rate per arm and version",
        (version_ratio("instruction_following"), "{{arm}} {{model_version}}"),
        unit="percentunit",
    ),
    p(
        "Violation rate per arm and version",
        (version_ratio("violations"), "{{arm}} {{model_version}}"),
        unit="percentunit",
    ),
    p(
        "Sessions per arm (latest window)",
        ('sum by (arm) (flywheel_streams_processor_window_stat{stat="sessions"})', "{{arm}}"),
    ),
]

# --- streams processors ---------------------------------------------------------------------
SP = "flywheel_streams_processor"
STREAMS_FLOW = [
    p("Events in/s per processor", (rate(f"{SP}_events_in_total", "processor"), "{{processor}}"), unit="ops"),
    p(
        "Consumer lag per processor",
        (f"sum by (processor) ({SP}_consumer_lag)", "{{processor}}"),
        description="Records not yet consumed, summed over the replicas (alert: FlywheelConsumerLagGrowing).",
    ),
    p(
        "Dead letters/s by reason",
        (rate(f"{SP}_dlq_total", "processor, reason"), "{{processor}} {{reason}}"),
        unit="ops",
        description="Records sent to chat.events.dlq (alert: FlywheelDeadLetterRateHigh above 1 % of the input).",
    ),
    p(
        "Events out/s per topic",
        (rate(f"{SP}_events_out_total", "processor, topic"), "{{processor}} → {{topic}}"),
        unit="ops",
    ),
    p(
        "Processing time per record p50 / p99",
        (quantile(0.5, f"{SP}_latency_seconds", "processor"), "p50 {{processor}}"),
        (quantile(0.99, f"{SP}_latency_seconds", "processor"), "p99 {{processor}}"),
        unit="s",
    ),
    p(
        "Commits and commit failures/s",
        (rate(f"{SP}_commits_total", "processor"), "commits {{processor}}"),
        (rate(f"{SP}_commit_failures_total", "processor, stage"), "failed {{processor}} {{stage}}"),
        unit="ops",
        description="Each commit writes outputs, state changelog and offsets in one transaction; a failure replays "
        "the batch (alert: FlywheelStreamCommitFailures).",
    ),
]
STREAMS_QUALITY = [
    p(
        "Late events/s per processor",
        (rate("flywheel_streams_processor_late_events_total", "processor"), "{{processor}}"),
        unit="ops",
    ),
    p(
        "Dropped/s by reason",
        (rate("flywheel_streams_processor_dropped_total", "processor, reason"), "{{processor}} {{reason}}"),
        unit="ops",
    ),
    p("Samples emitted/s by kind", (rate("flywheel_streams_processor_samples_total", "kind"), "{{kind}}"), unit="ops"),
    p(
        "Training jobs triggered (since start)",
        ("sum by (kind, trigger) (flywheel_streams_processor_jobs_triggered_total)", "{{kind}} {{trigger}}"),
        kind="stat",
    ),
    p(
        "Style of emitted samples",
        ("avg by (stream, stat) (flywheel_streams_processor_style_stat)", "{{stream}} {{stat}}"),
        description="Running means of words, emoji, questions and stock phrases per sample stream: a drift here is "
        "what the trainer will learn.",
    ),
]


# --- trainers -------------------------------------------------------------------------------
TR = "flywheel_trainers"
TRAINING = [
    p(
        "Training jobs by outcome (since start)",
        (f"sum by (kind, outcome) ({TR}_jobs_total)", "{{kind}} {{outcome}}"),
        (f"sum by (reason) ({TR}_registry_refusals_total)", "registry refused: {{reason}}"),
        kind="stat",
        description="published / rejected by the offline gate / failed; the registry refuses tampered "
        "or half-written checkpoints.",
    ),
    p(
        "Offline gate of the latest checkpoint",
        (f"max by (kind, metric) ({TR}_eval)", "{{kind}} {{metric}}"),
        description="Instruction-following rate, violation rate, reward score and win rate against the serving "
        "baseline on held-out prompts (alert: FlywheelCheckpointRejected).",
    ),
    p(
        "Job duration p50 / max (since start)",
        (f"histogram_quantile(0.5, sum by (le, kind) ({TR}_job_duration_seconds_bucket))", "p50 {{kind}}"),
        (f"histogram_quantile(1, sum by (le, kind) ({TR}_job_duration_seconds_bucket))", "max {{kind}}"),
        unit="s",
    ),
    p(
        "Training steps/s (live)",
        (rate(f"{TR}_train_steps_total", "kind"), "{{kind}}"),
        description="Optimiser steps per second right now; flat at zero while jobs are requested means a stuck "
        "worker (alert: FlywheelTrainerJobStuck).",
    ),
    p("Steps/s of the latest job", (f"max by (kind) ({TR}_steps_per_second)", "{{kind}}")),
    p("Final loss of the latest job", (f"max by (kind) ({TR}_loss)", "{{kind}}")),
    p("Gate numbers of the latest candidate", (f"max by (metric) ({TR}_gate_result)", "{{metric}}")),
]


def _grid(panels: list[Panel], y: int) -> tuple[list[dict[str, Any]], int]:
    out, x, row_h = [], 0, 8
    for panel in panels:
        if x + panel.width > 24:
            x, y = 0, y + row_h
        out.append((panel, {"x": x, "y": y, "w": panel.width, "h": row_h}))
        x += panel.width
    return out, y + row_h


def _panel_json(panel: Panel, pid: int, grid: dict[str, int]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
    }
    if panel.description:
        body["description"] = panel.description
    body.update(panel.extra)
    return body


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Panel]]], description: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row_title, row_panels in rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            }
        )
        pid, y = pid + 1, y + 1
        placed, y = _grid(row_panels, y)
        for panel, grid in placed:
            panels.append(_panel_json(panel, pid, grid))
            pid += 1
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["flywheel"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["flywheel"], "title": "Flywheel", "asDropdown": True}],
        "panels": panels,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        "flywheel-overview.json": dashboard(
            "flywheel-overview",
            "Flywheel overview",
            [
                ("Traffic", [STREAMS_FLOW[0], STREAMS_FLOW[1], SERVING_TRAFFIC[0]]),
                ("Engagement per arm", ENGAGEMENT[:3]),
                ("Quality per arm and version", [*ENGAGEMENT[3:7], SERVING_TRAFFIC[1]]),
                ("Canary", CANARY[:3]),
                ("Training", [TRAINING[0], TRAINING[1], TRAINING[2]]),
                ("Serving per arm", [SERVING_LATENCY[0], SERVING_LATENCY[1], SERVING_TRAFFIC[2]]),
            ],
            "The loop at a glance: traffic, engagement and quality per arm, canary, training, serving.",
        ),
        "flywheel-streams.json": dashboard(
            "flywheel-streams",
            "Flywheel streams",
            [
                ("Flow", STREAMS_FLOW),
                ("Engagement windows", ENGAGEMENT),
                ("Processor quality and outputs", STREAMS_QUALITY),
            ],
            "Stream processors: signals, curation, buffer.",
        ),
        "flywheel-trainers.json": dashboard(
            "flywheel-trainers",
            "Flywheel trainers",
            [
                ("Jobs and gate", TRAINING[:3]),
                ("Progress", TRAINING[3:]),
            ],
            "Trainer workers, offline gate and checkpoint registry.",
        ),
        "flywheel-serving.json": dashboard(
            "flywheel-serving",
            "Flywheel serving",
            [
                ("Traffic", SERVING_TRAFFIC),
                ("Latency", SERVING_LATENCY),
                ("Canary", CANARY),
                ("Event logging", SERVING_EVENTS),
            ],
            "Gateway, engines, hot-swap and canary.",
        ),
    }


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, board in dashboards().items():
        path = OUT / name
        text = render(board)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run python deploy/grafana/dashboards.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
