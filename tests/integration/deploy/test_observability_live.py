"""The shipped Prometheus rules and Grafana dashboards against a real Prometheus scraping
real Flywheel processes.

One short run: the stream processors, the trainer worker and the gateway are started as
`flywheel` subprocesses with metrics ports, registered with the local Prometheus through a
file_sd file, and driven with simulated traffic plus a burst of malformed events. Then:
every target is up; promtool accepts the config and rules; every dashboard and rule
expression evaluates; every panel shows data from this run; the dead-letter alert (a copy
of the shipped rule with short windows, restricted to this run's series) fires; an
operator's rollback fires the rollback alert.

The run is set up to reach every stage the panels need (a job trained, gated and
published; its checkpoint on canary; users of both arms counted at the canary's step):
small thresholds, a gate that passes, an even first step without burn-in, a fresh user
per live chat, and no synthetic event later than the wall clock. The tests wait for each stage with a generous deadline and fail, naming
the stage the run did reach, when one does not come.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas import Topics
from tests._deploy import (
    ROOT,
    Prometheus,
    dashboard_exprs,
    grafana_expand,
    metric_names,
    restrict,
    rule_exprs,
    rule_files,
    shortened_rules,
)
from tests._wait import wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]

TARGETS_DIR = Path(os.environ.get("FLYWHEEL_PROMETHEUS_TARGETS_DIR", "/tmp/flywheel-local/prometheus/targets"))
RULES_RUN_DIR = TARGETS_DIR.parent / "rules"
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
PROMTOOL = shutil.which("promtool")
ADMIN_TOKEN = uuid.uuid4().hex


def _free_port() -> int:
    """A port for a worker's /metrics, chosen here and bound by the worker.

    Only for the processes that cannot report a port they bound: in the product CLI
    FLYWHEEL_METRICS_PORT=0 means "no /metrics" (not "any port"), and prometheus_client's
    start_http_server does not say which port it got. Should another process take the
    port in between, that worker fails to start, and the targets-up wait reports it as
    exited with its log. The gateway is given --port 0 and reports its port (see
    _gateway_port).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_UVICORN_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class Proc:
    component: str
    argv: list[str]
    metrics_port: int
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Run:
    run_id: str
    namespace: str
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    gateway_port: int = 0  # known once the gateway has bound it (--port 0)

    def proc(self, component: str) -> Proc:
        return next(p for p in self.procs if p.component == component)

    def instance(self, component: str) -> str:
        return f"127.0.0.1:{self.proc(component).metrics_port}"


def _base_env(run_id: str, namespace: str, kafka: str, redis_url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(
        {
            "FLYWHEEL_BUS": "kafka",
            "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka,
            "FLYWHEEL_REDIS_URL": redis_url,
            "FLYWHEEL_TOPIC_NAMESPACE": namespace,
            "FLYWHEEL_LOG_LEVEL": "INFO",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # Short event-time windows and small thresholds, so one short run closes windows,
            # curates samples and triggers a training job.
            "FLYWHEEL_STREAMS__RUNNER__LAG_INTERVAL_S": "1",
            "FLYWHEEL_STREAMS__SIGNALS__WINDOW_S": "20",
            "FLYWHEEL_STREAMS__SIGNALS__GRACE_S": "2",
            "FLYWHEEL_STREAMS__SIGNALS__CONTINUE_WINDOW_S": "30",
            "FLYWHEEL_STREAMS__SIGNALS__SESSION_IDLE_S": "120",
            "FLYWHEEL_STREAMS__CURATION__CONTINUE_WINDOW_S": "30",
            "FLYWHEEL_STREAMS__CURATION__GRACE_S": "5",
            "FLYWHEEL_STREAMS__CURATION__SESSION_IDLE_S": "120",
            # SFT jobs only (the quickest kind to train, and one that yields a servable policy):
            # a low count threshold for samples.sft, unreachable ones for the others.
            "FLYWHEEL_STREAMS__BUFFER__MIN_SAMPLES": "1000000",
            "FLYWHEEL_STREAMS__BUFFER__MIN_SAMPLES_PER_TOPIC": json.dumps({"samples.sft": 20}),
            "FLYWHEEL_STREAMS__BUFFER__MAX_AGE_S": "3600",
            "FLYWHEEL_SERVING__ROUTING_PREFIX": f"ops-{run_id}:routing",
            "FLYWHEEL_TRAINERS__LEASE_PREFIX": f"ops-{run_id}:lease:",
            "FLYWHEEL_TRAINERS__REGISTRY__ROOT": str(tmp / "registry"),
            "FLYWHEEL_TRAINERS__WORK_DIR": str(tmp / "work"),
            # A small job and a small gate, so a checkpoint can come out within the run.
            "FLYWHEEL_TRAINERS__SFT__NUM_CANDIDATES": "0",
            "FLYWHEEL_TRAINERS__SFT__EPOCHS": "1",
            "FLYWHEEL_TRAINERS__GATE__PROMPTS_PER_CHARACTER": "2",
            "FLYWHEEL_TRAINERS__GATE__MAX_NEW_TOKENS": "16",
            # The gate passes (its verdict on a tiny sample is not what this test is about),
            # so the checkpoint is published and goes on canary.
            "FLYWHEEL_TRAINERS__GATE__IF_TOLERANCE": "1.0",
            "FLYWHEEL_TRAINERS__GATE__VIOLATION_TOLERANCE": "1.0",
            # A canary that counts users at its step within a window or two: an even split,
            # no burn-in, the ratio check from two expected users per arm. And one that stays
            # open until the operator acts: no advance (min samples out of reach), and a
            # family-wise alpha that a few hundred replies cannot exhaust (no automatic
            # promote or rollback).
            "FLYWHEEL_SERVING__CANARY__POLL_INTERVAL_S": "1",
            "FLYWHEEL_SERVING__CANARY__STEPS_BP": "[5000, 10000]",
            "FLYWHEEL_SERVING__CANARY__BURN_IN_S": "0",
            "FLYWHEEL_SERVING__CANARY__SRM_MIN_EXPECTED": "2",
            "FLYWHEEL_SERVING__CANARY__MIN_SAMPLES_PER_STEP": "1000000000",
            "FLYWHEEL_SERVING__CANARY__ALPHA": "1e-6",
            "FLYWHEEL_SERVING__ADMIN__TOKEN": ADMIN_TOKEN,
        }
    )
    return env


def _base_model(env: dict[str, str]) -> Path:
    """A locally built tiny base model for the gateway to serve. Any complete build in the
    cache will do (the gateway only serves it); without one, `flywheel trainers bootstrap`
    builds it (about a minute, once)."""
    cache = Path.home() / ".cache/flywheel/models"
    built = sorted(cache.glob("flywheel-tiny-*/config.json"), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1].parent
    out = subprocess.run(
        [FLYWHEEL, "trainers", "bootstrap", "--no-evaluate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("base model: "))
    return Path(line.removeprefix("base model: ").rsplit(" (", 1)[0])


def _processes(run: Run, tmp: Path) -> list[Proc]:
    """The processes of the run: one per component, each with its own metrics port."""
    procs = []
    for processor in ("signals", "curation", "buffer"):
        port = _free_port()
        env = {**run.env, "FLYWHEEL_METRICS_PORT": str(port)}
        procs.append(Proc(processor, [FLYWHEEL, "streams", "run", processor], port, env, tmp / f"{processor}.log"))
    port = _free_port()
    env = {**run.env, "FLYWHEEL_METRICS_PORT": str(port)}
    procs.append(Proc("trainer", [FLYWHEEL, "trainers", "run"], port, env, tmp / "trainer.log"))
    procs.append(
        Proc(
            "gateway",
            [
                FLYWHEEL,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--model-dir",
                str(_base_model(run.env)),
                "--base-version",
                "base",
            ],
            0,  # /metrics is on the gateway's own port, read from its log once bound
            dict(run.env),
            tmp / "gateway.log",
        )
    )
    return procs


def _gateway_port(run: Run) -> int:
    """The port the gateway bound (uvicorn logs it; the gateway loads its model first)."""
    gateway = run.proc("gateway")

    def bound() -> int:
        assert gateway.popen is not None and gateway.popen.poll() is None, f"the gateway exited\n{gateway.tail()}"
        found = _UVICORN_RUNNING.search(gateway.log.read_text(errors="replace"))
        return int(found.group(1)) if found else 0

    return wait_until(bound, 180, every_s=0.2, what="the gateway to bind its port")


def _register(run: Run) -> Path:
    path = TARGETS_DIR / f"ops-{run.run_id}.json"
    groups = [
        {"targets": [run.instance(p.component)], "labels": {"component": p.component, "run": run.run_id}}
        for p in run.procs
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.rename(path)  # Prometheus must never read a half-written file
    return path


def _install_test_rules(prom: Prometheus, run_id: str) -> Path:
    """Two copies of this checkout's rules, in one file of the server's run-time rules dir:
    verbatim (to check that each evaluates on the server) and with short windows, restricted
    to this run's series (to drive alerts in seconds). Alerts of both carry ``ruleset``."""
    if str(RULES_RUN_DIR) not in prom.loaded_rule_files():
        subprocess.run([str(ROOT / "deploy/local/prometheus.sh"), "reload"], check=True, timeout=60)
    groups = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                rule["labels"] = {**rule.get("labels", {}), "ruleset": f"shipped-{run_id}"}
            groups.append({**group, "name": f"{group['name']}-shipped-{run_id}"})
    short = shortened_rules(window="20s", for_="1s", ruleset=run_id)
    for group in short["groups"]:
        group["name"] = f"{group['name']}-{run_id}"
        for rule in group["rules"]:
            rule["expr"] = restrict(rule["expr"], run=run_id)
        groups.append(group)
    RULES_RUN_DIR.mkdir(parents=True, exist_ok=True)
    path = RULES_RUN_DIR / f"ops-{run_id}.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    prom.reload()
    prom.wait(
        "the test rules to load", lambda: sum(g["name"].endswith(run_id) for g in prom.rule_groups()) == len(groups), 30
    )
    return path


@pytest.fixture(scope="module")
def prom() -> Iterator[Prometheus]:
    from tests.conftest import PROMETHEUS_URL, _require_port

    _require_port(PROMETHEUS_URL.removeprefix("http://"), "Prometheus")
    client = Prometheus(PROMETHEUS_URL)
    yield client
    client.close()


@pytest.fixture(scope="module")
def run(prom: Prometheus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    from tests.conftest import KAFKA_BOOTSTRAP, REDIS_URL

    run_id = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("ops")
    namespace = f"ops-{run_id}"
    current = Run(run_id, namespace, _base_env(run_id, namespace, KAFKA_BOOTSTRAP, REDIS_URL, tmp))
    subprocess.run([FLYWHEEL, "topics", "create"], env=current.env, check=True, timeout=60, capture_output=True)
    _create_changelogs(current)
    _wait_for_leaders(current)
    rules_path: Path | None = None
    targets_path: Path | None = None
    try:
        current.procs = _processes(current, tmp)
        rules_path = _install_test_rules(prom, run_id)
        for proc in current.procs:
            proc.start()
        current.gateway_port = current.proc("gateway").metrics_port = _gateway_port(current)
        targets_path = _register(current)
        yield current
    finally:
        if targets_path is not None:
            targets_path.unlink(missing_ok=True)
        for proc in current.procs:
            proc.stop()
        if rules_path is not None:
            rules_path.unlink(missing_ok=True)
            prom.reload()
        _delete_topics(current)
        _delete_redis_keys(current)


def _create_changelogs(run: Run) -> None:
    """The processors' changelog topics, created up front like the contract topics, so that
    no process starts on a partition without a leader yet (the bus treats that as fatal)."""
    from flywheel.cli._streams import default_group
    from streams import KafkaBus, KafkaSettings
    from streams.processors import BufferProcessor, CurationProcessor, SignalsProcessor
    from streams.runners import changelog_topic
    from streams.runners._changelog import ensure_changelog

    topics = Topics(run.namespace)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))
    try:
        for name, cls in (("signals", SignalsProcessor), ("curation", CurationProcessor), ("buffer", BufferProcessor)):
            ensure_changelog(
                bus, changelog_topic(topics, default_group(name, topics)), [topics.name(t) for t in cls.inputs]
            )
    finally:
        bus.close()


def _wait_for_leaders(run: Run) -> None:
    """Fresh topics answer 'not leader' for a moment; start the processes once every
    partition has its leader."""
    from streams import KafkaBus, KafkaSettings

    bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))

    def led() -> bool:
        meta = bus.admin.list_topics(timeout=10).topics
        ours = [t for name, t in meta.items() if name.startswith(f"{run.namespace}.")]
        return bool(ours) and all(p.leader >= 0 and not p.error for t in ours for p in t.partitions.values())

    try:
        wait_until(led, 60, every_s=0.2, what=f"a leader for every partition of {run.namespace}.*")
    finally:
        bus.close()


def _delete_topics(run: Run) -> None:
    """Every topic of the run's namespace (the contract topics and the processors' changelogs)."""
    from streams import KafkaBus, KafkaSettings

    bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))
    try:
        names = [t for t in bus.admin.list_topics(timeout=10).topics if t.startswith(f"{run.namespace}.")]
        bus.delete_topics(names)
    finally:
        bus.close()


def _delete_redis_keys(run: Run) -> None:
    import redis

    client = redis.Redis.from_url(run.env["FLYWHEEL_REDIS_URL"])
    try:
        for key in client.scan_iter(match=f"ops-{run.run_id}:*"):
            client.delete(key)
    finally:
        client.close()


def _diagnose(run: Run) -> str:
    return "\n".join(f"--- {p.component} (exit {p.popen.poll() if p.popen else None})\n{p.tail()}" for p in run.procs)


def _targets_up(prom: Prometheus, run: Run) -> dict[str, str]:
    dead = [p.component for p in run.procs if p.popen is not None and p.popen.poll() is not None]
    if dead:
        pytest.fail(f"{dead} exited\n{_diagnose(run)}", pytrace=False)
    return {
        t["labels"].get("component", "?"): t["health"] for t in prom.targets() if t["labels"].get("run") == run.run_id
    }


def _chat(run: Run, user: str, turns: int, stream: bool) -> None:
    """One conversation through the gateway's OpenAI API (the gateway logs every turn)."""
    messages: list[dict[str, str]] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{run.gateway_port}", timeout=60) as http:
        for turn in range(turns):
            messages.append({"role": "user", "content": f"tell me about the sea, part {turn} ({user})"})
            body = {
                "model": "policy",
                "messages": messages,
                "user": user,
                "max_tokens": 16,
                "stream": stream,
                "metadata": {"character_id": "char-ops", "instructions": [{"kind": "max_words", "limit": 30}]},
            }
            if stream:
                with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    response.raise_for_status()
                    text = "".join(response.iter_text())
                reply = "".join(
                    json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    for line in text.splitlines()
                    if line.startswith("data: {") and json.loads(line[6:])["choices"]
                )
            else:
                response = http.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                reply = response.json()["choices"][0]["message"]["content"]
            messages.append({"role": "assistant", "content": reply})


def _traffic(run: Run, seconds: float) -> int:
    """Conversations for ``seconds``: enough event time for several signal windows to close."""
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        _chat(run, f"user-{n % 12}", turns=3, stream=n % 2 == 0)
        n += 1
    return n


def _event_time(value: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(value)["ts"].replace("Z", "+00:00"))


def _producer_traffic(run: Run, events: int = 4000) -> None:
    """What another producer app sent: sessions of both arms that started 20 to 10 minutes
    ago, up to now, so the signals processor closes several windows.

    Nothing later than now: a synthetic session runs on for minutes after it starts, and
    one event from the future moves a partition's watermark past the live traffic, whose
    windows are then closed on arrival (counted late): the gateway's arms would never get
    a window, and the canary nothing to count."""
    from streams import KafkaBus, KafkaSettings
    from tests.kits.synthetic_traffic import synthetic_events

    now = datetime.now(UTC)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))
    producer = bus.producer()
    try:
        topic = Topics(run.namespace).chat_events
        for key, value in synthetic_events(
            events, seed=11, users=80, start=now - timedelta(minutes=20), bad_share=0.0, span_s=590
        ):
            if _event_time(value) <= now:
                producer.produce(topic, value, key=key)
        producer.flush()
    finally:
        producer.close()
        bus.close()


def _malformed_burst(run: Run, count: int) -> None:
    """Records no producer should send: they must all be dead-lettered by the processors."""
    from streams import KafkaBus, KafkaSettings

    bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))
    producer = bus.producer()
    try:
        topic = Topics(run.namespace).chat_events
        for i in range(count):
            value = b"{not json" if i % 2 else b'{"schema_version": 99, "type": "x"}'
            producer.produce(topic, value, key=f"bad-{i % 7}")
        producer.flush()
    finally:
        producer.close()
        bus.close()


class _Trickle:
    """A producer app that keeps sending while the checks run, as live traffic would: about
    two fresh sessions a second, each event sent when its event time comes (so rates and
    latency quantiles are defined, and the watermark keeps to the wall clock), and, every
    few seconds, an event an hour late (past every window's grace: counted as late)."""

    def __init__(self, run: Run) -> None:
        from streams import KafkaBus, KafkaSettings

        self.run = run
        self.topic = Topics(run.namespace).chat_events
        self.bus = KafkaBus(KafkaSettings(bootstrap_servers=run.env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"]))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trickle", daemon=True)
        self.chats = threading.Thread(target=self._chats, name="trickle-chats", daemon=True)

    def _chats(self) -> None:
        """A new user or two a second through the gateway, once it is ready: each one a new
        session, so the canary has fresh assignments to count at its step (a returning user
        continues the session that was assigned before the step)."""
        n = 0
        while not self.stop_event.wait(0.3):  # pacing of the live traffic
            if not _ready(self.run):
                continue
            # The checks look at what was served; a refused request is the gateway's business.
            with contextlib.suppress(httpx.HTTPError):
                _chat(self.run, f"trickle-{n}", turns=1, stream=n % 2 == 0)
            n += 1

    def _run(self) -> None:
        from tests.conftest import event_dict
        from tests.kits.synthetic_traffic import synthetic_events

        # Sessions starting over the next 20 minutes (longer than the run), replayed in real time.
        events = synthetic_events(20_000, seed=1000, users=300, start=datetime.now(UTC), bad_share=0.0, span_s=1200)
        pending = sorted(((_event_time(value), key, value) for key, value in events), key=lambda e: e[0])
        sent = 0
        producer = self.bus.producer()
        tick = 0
        try:
            while not self.stop_event.wait(0.5):  # pacing of the live traffic
                tick += 1
                now = datetime.now(UTC)
                while sent < len(pending) and pending[sent][0] <= now:
                    _, key, value = pending[sent]
                    producer.produce(self.topic, value, key=key)
                    sent += 1
                if tick % 6 == 0:
                    late = event_dict(
                        "user_message",
                        user_id=f"late-{tick}",
                        conversation_id=f"late-{tick}",
                        ts=(now - timedelta(hours=1)).isoformat(),
                    )
                    producer.produce(self.topic, json.dumps(late).encode(), key=late["user_id"])
                producer.flush()
        finally:
            producer.close()

    def __enter__(self) -> _Trickle:
        self.thread.start()
        self.chats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        self.chats.join(timeout=70)
        self.bus.close()


@pytest.fixture(scope="module")
def driven(prom: Prometheus, run: Run) -> Iterator[Run]:
    """The run with every target up, traffic served, a dead-letter burst sent, and live
    traffic still flowing while the tests look."""
    try:
        prom.wait(
            "every target up",
            lambda: (h := _targets_up(prom, run)) and len(h) == len(run.procs) and all(v == "up" for v in h.values()),
            120,
        )
    except AssertionError:
        pytest.fail(f"targets: {_targets_up(prom, run)}\n{_diagnose(run)}", pytrace=False)
    _producer_traffic(run)
    with _Trickle(run):
        prom.wait("the gateway to be ready", lambda: _ready(run), 90)
        _traffic(run, 10)
        _malformed_burst(run, 400)
        yield run


def _ready(run: Run) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{run.gateway_port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_target_is_up(prom: Prometheus, driven: Run) -> None:
    health = _targets_up(prom, driven)
    assert health == {p.component: "up" for p in driven.procs}, _diagnose(driven)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_accepts_live_and_shipped_config_and_rules(prom: Prometheus, driven: Run) -> None:
    live_config = TARGETS_DIR.parent / "prometheus.yml"
    for config in (live_config, ROOT / "deploy/prometheus/prometheus.yml"):
        check = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    test_copy = RULES_RUN_DIR / f"ops-{driven.run_id}.yml"
    check = subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, rule_files()), str(test_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_rule_and_panel_expression_evaluates(prom: Prometheus, driven: Run) -> None:
    errors = []
    for expr in rule_exprs() + dashboard_exprs():
        for query in (grafana_expand(expr.expr), restrict(grafana_expand(expr.expr), run=driven.run_id)):
            try:
                prom.query(query)
            except AssertionError as exc:
                errors.append(f"{expr.source} / {expr.name}: {exc}")
    assert not errors, "\n".join(errors)

    # Loaded into the server verbatim, every shipped rule has been evaluated without error.
    def shipped() -> list[dict[str, Any]]:
        return [r for g in prom.rule_groups() if g["name"].endswith(f"-shipped-{driven.run_id}") for r in g["rules"]]

    prom.wait("every shipped rule to be evaluated", lambda: all(r["health"] != "unknown" for r in shipped()), 30)
    assert sorted(r["name"] for r in shipped()) == sorted(e.name for e in rule_exprs())
    assert all(r["health"] == "ok" for r in shipped()), [(r["name"], r.get("lastError")) for r in shipped()]


# The stages of the run, in the order it reaches them, each with the series that shows it
# was reached. Some panels have data only from a stage on: training jobs by outcome (a job
# finished); the offline gate, job duration and gate numbers (a checkpoint was gated);
# candidate lift and p-values (a candidate on canary); the sample-ratio p-value (users of
# both arms counted at the canary's step; no metric says so but that panel's own).
STAGES: dict[str, str] = {
    "a training job finished": 'flywheel_trainers_jobs_total{outcome!="skipped_leased"}',
    "a checkpoint went through the offline gate": 'flywheel_trainers_jobs_total{outcome=~"published|rejected"}',
    "a candidate on canary": 'flywheel_serving_swaps_total{result="loaded"}',
    "the canary counted users of both arms at its step": "flywheel_serving_canary_srm_p_value",
}
# Shown once an operator acts: test_operator_rollback_fires_the_rollback_alert acts and checks it.
OPERATOR_PANELS = {"Operator actions (since start)"}
# Counters of failures only, with labels: no series exists until the first failure, and a
# healthy run has none. Every other target of every panel must show data from this run.
FAILURES_ONLY = {"flywheel_trainers_registry_refusals_total", "flywheel_streams_processor_commit_failures_total"}
# Training, gating, publishing and loading a checkpoint on a loaded 2-core machine, and
# then a full signal window at the canary's step.
STAGES_TIMEOUT_S = 420


def _reached(prom: Prometheus, run: Run) -> list[str]:
    return [stage for stage, expr in STAGES.items() if prom.has_data(restrict(expr, run=run.run_id))]


def _panel_queries(run: Run) -> dict[tuple[str, str], list[str]]:
    """Every dashboard panel, (file, title) → its targets restricted to this run's series."""
    panels: dict[tuple[str, str], list[str]] = {}
    for expr in dashboard_exprs():
        panels.setdefault((expr.source, expr.name), []).append(restrict(grafana_expand(expr.expr), run=run.run_id))
    return panels


def _without_data(prom: Prometheus, run: Run) -> list[str]:
    return sorted(
        f"{source}: {title}"
        for (source, title), queries in _panel_queries(run).items()
        if title not in OPERATOR_PANELS and not any(prom.has_data(q) for q in queries)
    )


@pytest.fixture(scope="module")
def staged(prom: Prometheus, driven: Run) -> Run:
    """The driven run once it has reached every stage, waited for in order; a stage that
    does not come within the deadline fails the tests that need it, saying how far the run
    got and which panels had no data."""
    deadline = time.monotonic() + STAGES_TIMEOUT_S
    for stage, expr in STAGES.items():
        query = restrict(expr, run=driven.run_id)
        try:
            wait_until(
                lambda q=query: _targets_up(prom, driven) and prom.has_data(q),
                max(0.0, deadline - time.monotonic()),
                every_s=2,
                what=stage,
            )
        except AssertionError:
            pytest.fail(
                f"the run did not reach '{stage}' within {STAGES_TIMEOUT_S} s of the stage waits; "
                f"stages reached: {_reached(prom, driven) or 'none'}\n"
                f"panels without data: {_without_data(prom, driven)}\n{_diagnose(driven)}",
                pytrace=False,
            )
    return driven


def test_every_panel_shows_data_from_this_run(prom: Prometheus, staged: Run) -> None:
    """Each target of each panel returns a number, computed only from this run's series
    (panels are polled until the pipeline has produced everything); only counters of
    failures may have nothing to show."""
    panels = _panel_queries(staged)

    def quiet() -> list[tuple[str, str]]:
        return [
            (f"{source}: {title}", query)
            for (source, title), queries in panels.items()
            if title not in OPERATOR_PANELS
            for query in queries
            if not metric_names(query) <= FAILURES_ONLY and not prom.has_data(query)
        ]

    try:
        prom.wait("every panel target to show data", lambda: not quiet(), 90, every_s=2)
    except AssertionError:
        details = "\n".join(f"  {panel}: {query}\n    -> {prom.query(query)}" for panel, query in quiet())
        pytest.fail(
            f"targets without data from this run (stages reached: {_reached(prom, staged)}):\n"
            f"{details}\n{_diagnose(staged)}",
            pytrace=False,
        )


def test_dead_letter_burst_fires_the_dlq_alert(prom: Prometheus, driven: Run) -> None:
    """The shipped FlywheelDeadLetterRateHigh rule (windows shortened, restricted to this
    run's series) fires for the processors that consumed a malformed burst.

    The burst is sent here, not only when the run was driven: the shortened rule looks at
    the last 20 s, and the tests before this one take minutes."""
    _malformed_burst(driven, 400)

    def firing_for_signals() -> dict[str, Any] | None:
        # Each processor that consumed the burst gets its own alert, not necessarily in the
        # same evaluation: wait for the one checked here.
        return next(
            (
                a
                for a in prom.alerts()
                if a["labels"].get("ruleset") == driven.run_id
                and a["labels"]["alertname"] == "FlywheelDeadLetterRateHigh"
                and a["labels"].get("processor") == "signals"
                and a["state"] == "firing"
            ),
            None,
        )

    alert = prom.wait("FlywheelDeadLetterRateHigh to fire for the signals processor", firing_for_signals, 60, every_s=1)
    assert alert["labels"]["severity"] == "ticket"
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#flywheeldeadletterratehigh"
    assert "signals dead-letters" in alert["annotations"]["summary"]
    # And the condition behind it is real: both bursts' dead letters are counted for this run.
    dlq = f'sum(flywheel_streams_processor_dlq_total{{run="{driven.run_id}", processor="signals"}}) >= 800'
    prom.wait("both bursts' 800 dead letters to be counted", lambda: prom.has_data(dlq), 30, every_s=1)


def test_operator_rollback_fires_the_rollback_alert(prom: Prometheus, staged: Run) -> None:
    """An operator rolls the candidate back through the admin API: the decision is counted,
    the operator-actions panel shows it, and FlywheelCanaryRolledBack (short-window copy,
    this run's series) fires."""
    # A candidate is on canary (staged), and the canary keeps it until the operator acts.
    response = httpx.post(
        f"http://127.0.0.1:{staged.gateway_port}/admin/deployments/policy/rollback",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"actor": "ops-test", "reason": "observability check"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "rollback"

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in prom.alerts()
            if a["labels"].get("ruleset") == staged.run_id
            and a["labels"]["alertname"] == "FlywheelCanaryRolledBack"
            and a["state"] == "firing"
        ]

    alerts = prom.wait("FlywheelCanaryRolledBack to fire", firing, 30, every_s=1)
    assert alerts[0]["labels"]["model"] == "policy"
    panel = next(e for e in dashboard_exprs() if e.name == "Operator actions (since start)")
    query = restrict(grafana_expand(panel.expr), run=staged.run_id)
    assert prom.wait("the operator-actions panel", lambda: prom.has_data(query), 15)
    done = prom.query(
        restrict('flywheel_serving_admin_actions_total{action="rollback", result="done"}', run=staged.run_id)
    )
    assert float(done[0]["value"][1]) == 1
