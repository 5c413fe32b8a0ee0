"""docker-compose.yml and the Dockerfile agree with the code.

Docker cannot run here, so the compose file is checked by reading it: every command is a
real `flywheel` sub-command with real options, every FLYWHEEL_ variable is a real setting
(and a valid value), ports and topics match the code and the Prometheus config, and every
mounted file exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.settings import FlywheelSettings
from schemas import TOPICS

ROOT = Path(__file__).resolve().parents[3]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
PROCESSORS = ("signals", "curation", "buffer")
PASS_THROUGH = "<from the shell>"


def flywheel_argv(service: dict[str, Any]) -> list[str] | None:
    """The `flywheel …` words a service runs, as the container would see them: a
    ``sh -c "exec flywheel …"`` command is split like the shell would (compose turns $$ into $,
    the shell expands $HOSTNAME to the container's name)."""
    command = service.get("command")
    if not command:
        return None
    if command[:2] == ["sh", "-c"]:
        script = command[2].replace("$$", "$").replace("$HOSTNAME", "replica-1")
        words = shlex.split(script)
        while words and (words[0] == "exec" or "=" in words[0]):
            words.pop(0)
        command = words
    return command if command[0] == "flywheel" else None


FLYWHEEL_SERVICES = sorted(n for n, s in SERVICES.items() if flywheel_argv(s))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # A variable without a value is passed through from the shell running compose.
    return {k: PASS_THROUGH if v is None else str(v) for k, v in env.items()}


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _resolve(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk the click command tree of the `flywheel` app along ``argv``; return the leaf
    command, the path of names, and the remaining arguments. (typer ships its own copy of
    click, so commands are recognised by shape, not by class.)"""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(argv)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, (
            f"`flywheel {' '.join([*path, name])}` is not a command; have {sorted(command.commands)}"
        )
        command, path = sub, [*path, name]
    return command, path, rest


def _check_arguments(command: Any, path: list[str], rest: list[str]) -> None:
    """Parse the remaining words as click would: unknown options, missing or extra
    arguments and values outside their choices all fail here."""
    try:
        command.make_context(" ".join(["flywheel", *path]), list(rest))
    except Exception as exc:  # the vendored click's UsageError/BadParameter
        pytest.fail(f"`flywheel {' '.join(path + rest)}`: {exc}")


@pytest.mark.parametrize("service", FLYWHEEL_SERVICES)
def test_command_is_a_real_flywheel_subcommand(service: str) -> None:
    argv = flywheel_argv(SERVICES[service])[1:]
    command, path, rest = _resolve(argv)
    assert not _is_group(command), f"{service}: `flywheel {' '.join(path)}` is a group, not a command"
    _check_arguments(command, path, rest)
    # And the real CLI accepts the same words (callbacks, typer conversion included).
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_every_processor_has_its_own_scalable_service() -> None:
    for name in PROCESSORS:
        service = SERVICES[name]
        assert flywheel_argv(service)[:4] == ["flywheel", "streams", "run", name]
        # Replicas of one service need distinct transactional ids: the container's hostname.
        assert '--instance "$$HOSTNAME"' in service["command"][2]
        # --scale needs: no fixed container name, no host port bindings.
        assert "container_name" not in service and "ports" not in service, name
        assert service["build"]["target"] == "streams", f"{name} must use the slim image"


def _setting_path(name: str) -> list[str]:
    return name.removeprefix("FLYWHEEL_").lower().split("__")


def _walk_settings(parts: list[str]) -> None:
    model: type[BaseModel] = FlywheelSettings
    for i, part in enumerate(parts):
        fields = model.model_fields
        assert part in fields, (
            f"FLYWHEEL_{'__'.join(parts).upper()}: no setting {part!r} in {model.__name__} (have {sorted(fields)})"
        )
        annotation = fields[part].annotation
        if i < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"FLYWHEEL_{'__'.join(parts).upper()}: {part!r} is not a nested settings section"
            )
            model = annotation


@pytest.mark.parametrize("service", FLYWHEEL_SERVICES)
def test_every_flywheel_variable_is_a_real_setting_with_a_valid_value(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in _environment(SERVICES[service]).items() if k.startswith("FLYWHEEL_")}
    assert env, f"{service} sets no FLYWHEEL_ variables"
    for name in env:
        _walk_settings(_setting_path(name))
    # The values must parse too: build the settings from exactly this environment.
    for name in [k for k in os.environ if k.startswith("FLYWHEEL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value != PASS_THROUGH:
            monkeypatch.setenv(name, value)
    settings = FlywheelSettings()
    assert settings.bus == env.get("FLYWHEEL_BUS", settings.bus)
    if "FLYWHEEL_METRICS_PORT" in env:
        assert settings.metrics_port == int(env["FLYWHEEL_METRICS_PORT"])


def _scrape_ports() -> dict[str, int]:
    """compose service name -> port Prometheus scrapes it on."""
    ports: dict[str, int] = {}
    for job in PROMETHEUS["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                ports[name] = int(sd["port"])
    return ports


def test_prometheus_scrapes_every_component_on_its_metrics_port() -> None:
    scraped = _scrape_ports()
    for name in FLYWHEEL_SERVICES:
        if name == "topics-init":
            continue  # a one-shot job, nothing to scrape
        assert name in scraped, f"no scrape config for {name}"
        env = _environment(SERVICES[name])
        command = flywheel_argv(SERVICES[name])
        # The gateway serves /metrics on its HTTP port.
        port = int(command[command.index("--port") + 1]) if "--port" in command else int(env["FLYWHEEL_METRICS_PORT"])
        assert scraped[name] == port, f"{name}: scraped on {scraped[name]}, serves metrics on {port}"
        assert str(port) in [str(p).split(":")[-1] for p in SERVICES[name].get("expose", [])] + [
            str(p).split(":")[-1] for p in SERVICES[name].get("ports", [])
        ], f"{name} does not expose {port}"
    assert scraped["vllm"] == int(SERVICES["vllm"]["command"][SERVICES["vllm"]["command"].index("--port") + 1])


def test_gateway_scales_behind_the_proxy() -> None:
    """`--scale gateway=N`: no container name, no host port; the proxy finds every replica
    through Docker's DNS on the port it serves, sends the API to ready replicas and /admin
    to the leader, by paths the gateway really serves."""
    from serving import AdminConfig, AdminService, Gateway, GatewayConfig, MemoryRoutingStore, create_app
    from tests.kits.scripted_engine import ScriptedEngine

    cfg = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    templates = re.findall(r"^\s*server-template \S+ (\d+) ([\w-]+):(\d+)$", cfg, flags=re.M)
    for name in ("gateway", "gateway-cpu"):
        service = SERVICES[name]
        command = service["command"]
        port = command[command.index("--port") + 1]
        assert "ports" not in service and "container_name" not in service, name
        assert port in [str(p) for p in service["expose"]]
        assert f"127.0.0.1:{port}/health" in " ".join(service["healthcheck"]["test"])
        assert [t for t in templates if t[1] == name] == [("16", name, port)] * 2, name  # API and admin backends
    proxy = SERVICES["gateway-proxy"]
    assert proxy["image"].startswith("haproxy:") and proxy["ports"] == ["8080:8080"]
    assert "./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert re.search(r"^\s*bind :8080$", cfg, flags=re.M)
    assert "nameserver dns 127.0.0.11:53" in cfg  # Docker's embedded DNS
    assert re.search(r"^\s*retry-on .*\b503\b", cfg, flags=re.M)  # candidate_unavailable: another replica
    checks = re.findall(r"^\s*option httpchk GET (\S+)$", cfg, flags=re.M)
    assert checks == ["/ready", "/admin/leader"]
    app = create_app(
        Gateway(GatewayConfig(), MemoryRoutingStore(), ScriptedEngine()), AdminService(AdminConfig(), {}), False
    )
    assert set(checks) <= set(app.openapi()["paths"])


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy (Debian package haproxy) not installed")
def test_haproxy_accepts_the_proxy_config() -> None:
    run = subprocess.run(
        ["haproxy", "-c", "-f", str(ROOT / "deploy/haproxy/haproxy.cfg")], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_kafka_is_official_kraft_and_clients_use_its_listener() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    advertised = dict(reversed(item.split("://", 1)) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for name in FLYWHEEL_SERVICES:
        assert _environment(SERVICES[name])["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] in advertised
    # Topics are created by the init job only, with the code's partition counts and policies.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 1  # one broker: transactions need this


def test_topic_init_job_runs_before_every_client() -> None:
    assert SERVICES["topics-init"]["command"] == ["flywheel", "topics", "create"]
    assert SERVICES["topics-init"]["restart"] == "no"
    for name in FLYWHEEL_SERVICES:
        if name != "topics-init":
            assert SERVICES[name]["depends_on"]["topics-init"] == {"condition": "service_completed_successfully"}, name


def test_topics_named_anywhere_in_the_stack_exist_in_the_code() -> None:
    known = {t.name for t in TOPICS}
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    mentioned = set(re.findall(r"\b(?:chat|engagement|samples|trainer|models|serving)\.[a-z.]+\b", text))
    assert mentioned <= known, mentioned - known
    # Every namespace in the stack is the same, so all processes see the same topics.
    namespaces = {_environment(SERVICES[n]).get("FLYWHEEL_TOPIC_NAMESPACE", "") for n in FLYWHEEL_SERVICES}
    assert len(namespaces) == 1


def test_vllm_is_the_official_server_with_gpu_and_runtime_lora() -> None:
    vllm = SERVICES["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert _environment(vllm)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "--enable-lora" in vllm["command"]
    _assert_gpu(vllm)
    gateway = SERVICES["gateway"]
    assert gateway["command"][gateway["command"].index("--engine") + 1] == "vllm"
    assert gateway["depends_on"]["vllm"]["condition"] == "service_healthy"


def _script_default(name: str) -> str:
    """The default of a FLYWHEEL_LOCAL_VLLM_* setting in deploy/local/vllm.sh."""
    script = (ROOT / "deploy/local/vllm.sh").read_text()
    match = re.search(r"\$\{FLYWHEEL_LOCAL_VLLM_" + name + r":-([^}]*)\}", script)
    assert match, f"deploy/local/vllm.sh has no FLYWHEEL_LOCAL_VLLM_{name}"
    return match.group(1)


def test_compose_vllm_runs_with_the_flags_of_the_local_vllm_script() -> None:
    command = SERVICES["vllm"]["command"]
    script = (ROOT / "deploy/local/vllm.sh").read_text()

    def value(flag: str) -> str:
        return str(command[command.index(flag) + 1])

    assert value("--served-model-name") == _script_default("SERVED_NAME")
    assert value("--max-lora-rank") == _script_default("MAX_LORA_RANK")
    assert value("--max-loras") == _script_default("MAX_LORAS")
    for flag in ("--enable-lora", "--max-model-len", "--dtype"):
        assert flag in command and flag in script, flag
    assert _script_default("VERSION") == SERVICES["vllm"]["image"].rsplit(":v", 1)[1]
    # The trainers' adapters must fit the servers' rank limit.
    from trainers.common import LoraAdapterConfig

    assert LoraAdapterConfig().r <= int(value("--max-lora-rank"))
    # ...and the GPU trainer trains LoRA generations over the very base vLLM serves.
    trainer = _environment(SERVICES["trainer"])
    assert trainer["FLYWHEEL_TRAINERS__BASE_DIR"] == value("--model")
    for recipe in ("SFT", "DPO", "GRPO"):
        assert trainer[f"FLYWHEEL_TRAINERS__{recipe}__LORA__ENABLED"] == "true"


def test_cpu_fallback_profile_uses_the_embedded_engine_without_gpu() -> None:
    for name in ("gateway-cpu", "trainer-cpu"):
        assert SERVICES[name]["profiles"] == ["cpu"]
        assert "deploy" not in SERVICES[name]
    command = SERVICES["gateway-cpu"]["command"]
    assert command[command.index("--engine") + 1] == "embedded"
    for name in ("vllm", "gateway", "trainer"):
        assert SERVICES[name]["profiles"] == ["gpu"]


def _assert_gpu(service: dict[str, Any]) -> None:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_trainer_worker_reserves_a_gpu() -> None:
    assert SERVICES["trainer"]["command"] == ["flywheel", "trainers", "run"]
    _assert_gpu(SERVICES["trainer"])
    assert SERVICES["trainer"]["build"]["target"] == "full"


def test_every_mounted_file_exists() -> None:
    mounts = 0
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                mounts += 1
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
    assert mounts >= 5


def test_prometheus_and_grafana_are_provisioned() -> None:
    prom = SERVICES["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in prom["volumes"]
    assert PROMETHEUS["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    grafana = SERVICES["grafana"]
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/flywheel.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    home = _environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).relative_to(path)).is_file()


def test_dockerfile_builds_a_slim_streams_image_and_a_full_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.M)
    assert {"streams", "full"} <= set(stages)
    assert re.search(
        r"uv pip install .*-c requirements/lock\.txt \. \$\{STREAMS_EXTRA_PACKAGES\}$", dockerfile, flags=re.M
    )
    assert re.search(r'uv pip install .*"\.\[train,serve\]"', dockerfile)
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["target"] in stages, name
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    heavy = {"torch", "transformers", "trl", "peft", "vllm", "fastapi"}
    assert not {re.split(r"[<>=!\[ ]", d)[0].lower() for d in core} & heavy


_STREAMS_IMPORTS = """
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[2]))
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed in the streams image)", name=name)
        return None
sys.meta_path.insert(0, _Block())
from typer.testing import CliRunner
from flywheel.cli import app
for argv in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, [*argv, "--help"])
    if result.exit_code != 0:
        print(argv, result.output, repr(result.exception), file=sys.stderr)
        sys.exit(1)
"""


def _closure(requirements: list[str]) -> set[str]:
    """Distributions installed by ``requirements`` (names normalised), dependencies included."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        with contextlib.suppress(PackageNotFoundError):
            todo.extend(Requirement(r) for r in requires(name) or [])
    return seen


def test_streams_image_runs_its_commands_without_torch() -> None:
    """The slim image (Dockerfile target `streams`) installs the core dependencies and the
    packages named in STREAMS_EXTRA_PACKAGES: nothing of the torch stack. Its commands must
    start with exactly that: every other installed package is made unimportable here."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    extra = re.search(r'ARG STREAMS_EXTRA_PACKAGES="([^"]*)"', (ROOT / "Dockerfile").read_text())
    assert extra, "Dockerfile: ARG STREAMS_EXTRA_PACKAGES missing"
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = _closure(core + extra.group(1).split())
    assert not installed & {"torch", "transformers", "trl", "peft", "vllm"}, (
        "the streams image would install the torch stack"
    )
    ours = {"schemas", "streams", "trainers", "serving", "flywheel", "tests"}
    blocked = sorted(
        m
        for m, dists in packages_distributions().items()
        if m not in ours and not any(canonicalize_name(d) in installed for d in dists)
    )
    assert "torch" in blocked and "transformers" in blocked
    argvs = [flywheel_argv(SERVICES[name])[1:] for name in ("topics-init", *PROCESSORS)]
    run = subprocess.run(
        [sys.executable, "-c", _STREAMS_IMPORTS, json.dumps(argvs), json.dumps(blocked)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, f"a streams-image command imports a package that image lacks:\n{run.stderr[-3000:]}"
