"""Reading the shipped Prometheus rules and Grafana dashboards, and talking to a real
Prometheus: shared by tests/unit/deploy and tests/integration/deploy."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests._wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "deploy/prometheus/rules"
DASHBOARDS_DIR = ROOT / "deploy/grafana/dashboards"
DATASOURCE_UID = "flywheel-prometheus"

# Grafana's built-in interval variables, as the test evaluates them (scrape interval 1 s).
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m"}
_METRIC = re.compile(r"(?<![\w:])(flywheel_[A-Za-z0-9_]+)(\{[^}]*\})?(?!\s*\()")


@dataclass(frozen=True)
class Expr:
    """One PromQL expression and where it comes from."""

    source: str  # dashboard file or rules file
    name: str  # panel title / alert name
    expr: str


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def alert_rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def rule_exprs() -> list[Expr]:
    return [Expr(path.name, rule.get("alert") or rule["record"], rule["expr"]) for path, rule in alert_rules()]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def dashboard_exprs() -> list[Expr]:
    out: list[Expr] = []
    for path in dashboard_files():
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                out.append(Expr(path.name, panel["title"], target["expr"]))
    return out


def grafana_expand(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def metric_names(expr: str) -> set[str]:
    return {m.group(1) for m in _METRIC.finditer(expr)}


def restrict(expr: str, **labels: str) -> str:
    """``expr`` with ``labels`` added to every flywheel_* selector, e.g. to look only at the
    series of one test run in a Prometheus that other runs share."""
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())

    def add(m: re.Match[str]) -> str:
        inner = (m.group(2) or "{}")[1:-1].strip()
        return f"{m.group(1)}{{{matchers}{',' + inner if inner else ''}}}"

    return _METRIC.sub(add, expr)


_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")


def seconds(duration: str) -> float:
    m = _DURATION.match(duration)
    assert m, f"not a simple duration: {duration}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def shortened_rules(window: str = "20s", for_: str = "1s", **labels: str) -> dict[str, Any]:
    """The shipped rules with every range window and ``for:`` shortened so that a test can
    drive them in seconds; alert labels get ``labels`` added so the copy is told apart."""
    groups = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules = []
            for rule in group["rules"]:
                rule = dict(rule)
                rule["expr"] = re.sub(r"\[(\d+[smhd])(:\d*[smhd]?)?\]", f"[{window}]", rule["expr"])
                rule["expr"] = re.sub(r"offset \d+[smhd]", f"offset {window}", rule["expr"])
                if "for" in rule:
                    rule["for"] = for_
                rule["labels"] = {**rule.get("labels", {}), **labels}
                rules.append(rule)
            groups.append({"name": f"test-{group['name']}", "interval": "1s", "rules": rules})
    return {"groups": groups}


class Prometheus:
    """The HTTP API of a real Prometheus server."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises AssertionError with Prometheus's message on any error."""
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}\n-> {body.get('errorType')}: {body.get('error')}"
        result = body["data"]["result"]
        return result if isinstance(result, list) else [{"value": result}]

    def has_data(self, expr: str) -> bool:
        """At least one series with a real number (not NaN) now."""
        return any(not math.isnan(float(s["value"][1])) for s in self.query(expr) if "value" in s)

    def targets(self) -> list[dict[str, Any]]:
        return self.http.get("/api/v1/targets", params={"state": "active"}).json()["data"]["activeTargets"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.http.get("/api/v1/alerts").json()["data"]["alerts"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.http.get("/api/v1/rules").json()["data"]["groups"]

    def reload(self) -> None:
        self.http.post("/-/reload").raise_for_status()

    def loaded_rule_files(self) -> str:
        return self.http.get("/api/v1/status/config").json()["data"]["yaml"]

    def wait(self, what: str, check: Any, timeout_s: float, every_s: float = 0.5) -> Any:
        """``check()``'s first truthy value, polled every ``every_s``; AssertionError after ``timeout_s``."""
        return wait_until(check, timeout_s, every_s=every_s, what=what)

    def close(self) -> None:
        self.http.close()
