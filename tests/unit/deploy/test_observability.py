"""Alert rules and dashboards, checked offline: promtool accepts them, every metric they
name is one the code exports, every alert has a runbook entry, the dashboards are well-formed
and match their generator. (tests/integration/deploy runs them against a live Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests._deploy import (
    DASHBOARDS_DIR,
    DATASOURCE_UID,
    ROOT,
    alert_rules,
    dashboard_exprs,
    dashboard_files,
    grafana_expand,
    metric_names,
    panels,
    rule_exprs,
    rule_files,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"'](flywheel_[a-z0-9_]+)[\"']", re.S)
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}


def exported_metrics() -> dict[str, str]:
    """Every series name the code can export -> the file defining it (prometheus-client
    naming: a Counter 'x' or 'x_total' is exposed as x_total, a Histogram as x_bucket…)."""
    names: dict[str, str] = {}
    for package in ("streams", "trainers", "serving", "flywheel"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in _DEFINITION.findall(path.read_text()):
                base = name.removesuffix("_total") if kind == "Counter" else name
                for suffix in _SUFFIXES[kind]:
                    names[base + suffix] = str(path.relative_to(ROOT))
    return names


def test_the_code_exports_metrics_with_unique_names() -> None:
    seen: dict[str, str] = {}
    for package in ("streams", "trainers", "serving", "flywheel"):
        for path in (ROOT / package).rglob("*.py"):
            for _, name in _DEFINITION.findall(path.read_text()):
                other = seen.setdefault(name, str(path))
                assert other == str(path), f"{name} defined in {other} and {path}"
    assert seen


@pytest.mark.parametrize("expr", rule_exprs() + dashboard_exprs(), ids=lambda e: f"{e.source}:{e.name}")
def test_every_metric_named_is_exported_by_the_code(expr) -> None:
    known = exported_metrics()
    names = metric_names(expr.expr)
    assert names or expr.expr.startswith("up{"), f"{expr.name}: names no flywheel metric"
    missing = sorted(names - set(known))
    assert not missing, f"{expr.source} / {expr.name}: {missing} are not exported by any module"


@needs_promtool
def test_promtool_accepts_the_shipped_rules() -> None:
    files = rule_files()
    assert len(files) >= 3
    run = subprocess.run([PROMTOOL, "check", "rules", *map(str, files)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_promtool_accepts_the_compose_prometheus_config() -> None:
    run = subprocess.run(
        [PROMTOOL, "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@needs_promtool
def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses PromQL offline only inside rule files: wrap each panel expression as a
    recording rule (Grafana's interval variables replaced as Grafana would)."""
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:expr_{i}", "expr": grafana_expand(e.expr)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(rules)} rules found" in run.stdout


@needs_promtool
def test_alert_rules_fire_on_their_conditions(tmp_path: Path) -> None:
    """promtool's rule unit tests (deploy/prometheus/tests): each alert fires on a synthetic
    series that breaks its condition and stays quiet on a healthy one. promtool compares
    annotations too; those are templates checked by `promtool check rules` and rendered in
    the integration test, so the tests run on a copy of the rules without them."""
    (tmp_path / "rules").mkdir()
    for path in rule_files():
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        (tmp_path / "rules" / path.name).write_text(yaml.safe_dump(doc))
    (tmp_path / "tests").mkdir()
    tests = sorted((ROOT / "deploy/prometheus/tests").glob("*.yml"))
    assert tests
    for path in tests:
        (tmp_path / "tests" / path.name).write_text(path.read_text())
    run = subprocess.run(
        [PROMTOOL, "test", "rules", *(p.name for p in tests)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path / "tests",
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    tested = set()
    for path in tests:
        assert {Path(f).name for f in yaml.safe_load(path.read_text())["rule_files"]} <= {p.name for p in rule_files()}
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    alerts = {rule["alert"] for _, rule in alert_rules() if "alert" in rule}
    assert alerts <= tested, f"alerts without a firing test: {sorted(alerts - tested)}"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        out.add(re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-"))
    return out


def test_every_alert_is_labelled_and_has_a_runbook_entry() -> None:
    runbook = (ROOT / "docs/operations.md").read_text()
    anchors = _anchors(runbook)
    names = []
    for _path, rule in alert_rules():
        if "alert" not in rule:
            continue
        names.append(rule["alert"])
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["labels"]["component"] in {"streams", "trainers", "serving", "canary"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/operations.md#"), url
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no heading for {url} in docs/operations.md"
    assert len(names) == len(set(names)), "alert names must be unique"


REQUIRED_ALERTS = {
    "FlywheelConsumerLagGrowing",
    "FlywheelDeadLetterRateHigh",
    "FlywheelStreamCommitFailures",
    "FlywheelNoChatEvents",
    "FlywheelTrainerJobsFailing",
    "FlywheelTrainerJobStuck",
    "FlywheelCheckpointRejected",
    "FlywheelCanaryRolledBack",
    "FlywheelCanarySampleRatioMismatch",
    "FlywheelViolationRateHigh",
    "FlywheelGatewayErrorRateHigh",
    "FlywheelGatewayLatencyHigh",
    "FlywheelGatewayTTFTHigh",
    "FlywheelGatewayEventBufferOverflow",
}


def test_the_alerts_operators_asked_for_exist() -> None:
    alerts = {rule["alert"] for _, rule in alert_rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS, sorted(REQUIRED_ALERTS - alerts)


def test_dashboards_match_their_generator() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "deploy/grafana/dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem and board["title"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


def test_there_is_an_overview_and_one_dashboard_per_part() -> None:
    assert {p.stem for p in DASHBOARDS_DIR.glob("*.json")} >= {
        "flywheel-overview",
        "flywheel-streams",
        "flywheel-trainers",
        "flywheel-serving",
    }
    overview = json.loads((DASHBOARDS_DIR / "flywheel-overview.json").read_text())
    text = json.dumps(overview)
    for metric in (
        "flywheel_streams_processor_window_stat",
        "flywheel_serving_canary_share_ratio",
        "flywheel_serving_canary_decisions_total",
        "flywheel_serving_ttft_seconds_bucket",
        "flywheel_serving_e2e_latency_seconds_bucket",
        "flywheel_serving_requests_total",
    ):
        assert metric in text, f"overview lacks {metric}"
