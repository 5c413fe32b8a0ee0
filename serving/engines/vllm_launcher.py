"""Blue/green for full-weight generations: a vLLM process of their own.

vLLM applies a LoRA adapter to the base it serves, so a generation with full weights cannot
be hot-loaded into a running server. The launcher starts a second vLLM server for it, on a
loopback port of its own (``first_port``..``last_port``), serving the checkpoint under its
immutable name ``<model>@<version>``. It runs ``deploy/local/vllm.sh start`` for that port
(the base server's flags, a run dir per port), which returns once the server is ready the
way the base server's start is: ``/health`` answers, the name is listed and a real
completion comes back. The engine then routes the version there; after the version is
unloaded and its in-flight requests have drained, ``stop`` ends the process and waits for
its port to close.

Only processes started here are stopped here: the base server the deployment started is
never the launcher's, and a port that something else already holds is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving._errors import ModelLoadError
from serving.engines.vllm_config import VllmLauncherConfig

log = logging.getLogger(__name__)
_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "vllm.sh"
_SCRIPT_MARGIN_S = 30.0  # the script installs nothing when the venv is cached; this covers its own start-up


@dataclass(frozen=True)
class LaunchedReplica:
    """A vLLM process the launcher started for one full-weight version."""

    version: str
    served_name: str
    port: int
    model_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class VllmLauncher:
    def __init__(self, config: VllmLauncherConfig, reserved_ports: Iterable[int] = ()) -> None:
        self.config = config
        self._reserved = set(reserved_ports)  # the deployment's own replicas: never ours to take
        self._taken: set[int] = set()

    @property
    def script(self) -> Path:
        return self.config.script or _SCRIPT

    def _free_port(self, version: str) -> int:
        for port in range(self.config.first_port, self.config.last_port + 1):
            if port not in self._reserved and port not in self._taken and not port_open(port):
                return port
        raise ModelLoadError(
            f"checkpoint {version}: no free port in {self.config.first_port}-{self.config.last_port} "
            "for its vLLM process; stop an old one or widen the launcher's port range",
            version=version,
        )

    def _env(self, port: int, served_name: str) -> dict[str, str]:
        env = dict(os.environ)  # the child needs PATH, HOME, FLYWHEEL_CACHE…; only these differ
        env["FLYWHEEL_LOCAL_VLLM_PORT"] = str(port)
        env["FLYWHEEL_LOCAL_VLLM_SERVED_NAME"] = served_name
        env["FLYWHEEL_LOCAL_VLLM_READY_TIMEOUT_S"] = str(int(self.config.ready_timeout_s))
        if self.config.cpu_bind is not None:
            env["FLYWHEEL_LOCAL_VLLM_CPU_BIND"] = self.config.cpu_bind
        if self.config.venv is not None:
            env["FLYWHEEL_LOCAL_VLLM_VENV"] = str(self.config.venv)
        return env

    async def _script(self, port: int, served_name: str, *args: str, timeout_s: float) -> tuple[int, str]:
        """Run the script for ``port``; (exit status, its stderr). Killed at ``timeout_s`` (status -1)."""
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(self.script),
            *args,
            env=self._env(port, served_name),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, f"{' '.join(args)} still running after {timeout_s:.0f}s"
        finally:
            if proc.returncode is None:  # cancelled: do not leave the script behind
                proc.kill()
        return proc.returncode or 0, err.decode(errors="replace")

    async def launch(self, version: str, served_name: str, model_dir: Path) -> LaunchedReplica:
        """Start a vLLM process serving ``model_dir`` as ``served_name`` and return once it is
        ready. Raises ModelLoadError (the process stopped again) when it fails or times out;
        a cancelled launch stops the process too."""
        if not self.script.is_file():
            raise ModelLoadError(f"checkpoint {version}: launch script {self.script} not found", version=version)
        port = self._free_port(version)
        self._taken.add(port)
        replica = LaunchedReplica(version, served_name, port, model_dir)
        log.info("checkpoint %s: starting vLLM for its full weights on %s as %s", version, replica.url, served_name)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            rc, err = await self._script(
                port, served_name, "start", str(model_dir), timeout_s=self.config.ready_timeout_s + _SCRIPT_MARGIN_S
            )
            if rc != 0:
                raise ModelLoadError(
                    f"checkpoint {version}: its vLLM process on port {port} did not become ready: {err[-1500:]}",
                    version=version,
                )
            if served_name not in await _listed(replica.url):  # the script found the port taken, by another server
                self._taken.discard(port)
                raise ModelLoadError(
                    f"checkpoint {version}: port {port} answers but does not serve {served_name}", version=version
                )
        except (ModelLoadError, asyncio.CancelledError):  # a failed or cancelled start leaves no process behind
            await asyncio.shield(self.stop(replica))
            raise
        except OSError as exc:  # bash itself could not run
            await asyncio.shield(self.stop(replica))
            raise ModelLoadError(f"checkpoint {version}: could not run {self.script}: {exc}", version=version) from exc
        log.info("checkpoint %s: vLLM ready on %s after %.0fs", version, replica.url, loop.time() - started)
        return replica

    async def drain_and_stop(self, replica: LaunchedReplica, in_flight: Callable[[], int]) -> None:
        """Wait (``drain_timeout_s`` at most) until ``in_flight()`` is 0, then stop the process."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout_s
        while in_flight() > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if in_flight() > 0:
            log.warning(
                "checkpoint %s: %d requests still in flight after %.0fs; stopping its vLLM process anyway",
                replica.version,
                in_flight(),
                self.config.drain_timeout_s,
            )
        await self.stop(replica)

    async def stop(self, replica: LaunchedReplica) -> None:
        """Stop the process (its whole process group, through the script) and wait for its port to close."""
        if replica.port not in self._taken:
            return
        try:
            rc, err = await self._script(
                replica.port, replica.served_name, "stop", timeout_s=self.config.stop_timeout_s + _SCRIPT_MARGIN_S
            )
        except OSError as exc:
            rc, err = -1, str(exc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.stop_timeout_s
        while port_open(replica.port) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        if rc != 0 or port_open(replica.port):
            log.error(
                "checkpoint %s: vLLM process on %s may still run (stop: %s %s)",
                replica.version,
                replica.url,
                rc,
                err[-500:],
            )
            return
        self._taken.discard(replica.port)
        log.info("checkpoint %s: stopped its vLLM process on %s", replica.version, replica.url)


async def _listed(url: str) -> set[str]:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{url}/v1/models")
            return {m["id"] for m in resp.json()["data"]}
    return set()
