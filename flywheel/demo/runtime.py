"""The whole platform in one process: the same components as production, wired on the
embedded bus with an in-memory routing store and the embedded engine (or, with
``kafka=True``, on the local broker with Redis).

Every part is built by the composition root (flywheel.wiring) from the demo's overlay
on the settings (flywheel/demo/_platform.py), as `flywheel serve`, `streams run` and
`trainers run` build theirs. Threads: the gateway, the hot-swap controller and the
canary's evaluation thread run as in `flywheel serve` (``ServingThread`` runs that
replica); each stream processor has its runner thread; the trainer worker has its
thread; the simulated users have theirs. Nothing here is demo-only logic except the
choice of settings and the base-model bootstrap.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.demo._platform import platform_settings
from flywheel.demo._serving import ServingThread
from flywheel.demo.config import DemoConfig
from flywheel.settings import FlywheelSettings
from flywheel.sim import GatewayClient, Population, Simulator, TurnRecord, WallClock, shared_catalogue
from flywheel.wiring import PROCESSORS, build_serving, make_bus, make_processor, make_worker
from streams import Bus, ChatEventProducer

if TYPE_CHECKING:
    from flywheel.demo.progress import Progress
    from schemas import EvalReport
    from streams.runners import EmbeddedRunner
    from trainers.worker import TrainerWorkerSettings
    from trainers.worker.worker import TrainerWorker

log = logging.getLogger(__name__)


@dataclass
class SimThread:
    """The simulated users on their own event loop; ``pause()`` / ``resume()`` between phases."""

    simulator: Simulator
    client: GatewayClient
    _thread: threading.Thread | None = None
    _running: threading.Event = field(default_factory=threading.Event)
    _quit: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> None:
        self._idle.set()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="demo-users", daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        try:
            while not self._quit.is_set():
                if not self._running.is_set():
                    self._idle.set()
                    await asyncio.sleep(0.05)
                    continue
                self._idle.clear()
                await self.simulator.run(stop=lambda: self._quit.is_set() or not self._running.is_set())
        except Exception as exc:  # surfaced by the orchestrator
            self.error = exc
            log.exception("simulated users stopped")
        finally:
            self._idle.set()
            await self.client.aclose()

    def resume(self) -> None:
        self._running.set()

    def pause(self, timeout_s: float = 60.0) -> None:
        """Stop sending new messages; returns when in-flight requests are answered."""
        self._running.clear()
        self._idle.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self._running.is_set()

    def stop(self) -> None:
        self._quit.set()
        self._running.clear()
        if self._thread is not None:
            self._thread.join(30)


class DemoRuntime:
    """Build, start and stop every component, through the composition root
    (flywheel.wiring) from the demo's overlay on the settings. ``start()`` returns once the
    gateway listens."""

    def __init__(
        self,
        settings: FlywheelSettings,
        config: DemoConfig,
        base_model_dir: Path,
        kafka: bool = False,
        on_turn: Callable[[TurnRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.base_model_dir = base_model_dir
        self.kafka = kafka
        self.run_id = uuid.uuid4().hex[:8]
        # The registry and trainer scratch space of this run (removed on stop).
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"flywheel-demo-{self.run_id}-"))
        self.settings = platform_settings(
            settings, config, run_id=self.run_id, kafka=kafka, base_model_dir=base_model_dir, work_dir=self.work_dir
        )
        self.topics = self.settings.topics
        self.bus: Bus = make_bus(self.settings)
        self._on_turn = on_turn
        self._runners: list[EmbeddedRunner] = []
        self.worker: TrainerWorker | None = None
        # Serving and training load models in one process here: one load at a time
        # (transformers' from_pretrained patches process-wide state while it runs).
        self.load_lock = threading.Lock()

    @property
    def worker_settings(self) -> TrainerWorkerSettings:
        return self.settings.trainers

    # -- build ----------------------------------------------------------------------
    def start(self) -> None:
        from streams.runners import EmbeddedRunner

        cfg = self.config
        self.bus.create_topics(self.topics.specs())
        if cfg.engine == "vllm":
            check_vllm_serves(cfg.vllm_url, f"{cfg.model}@base", self.base_model_dir)
        self.stack = build_serving(self.settings, bus=self.bus, load_lock=self.load_lock)
        for name in PROCESSORS:
            processor = make_processor(name, self.settings, self.topics)
            runner = EmbeddedRunner(self.bus, processor, self.topics, group_id=f"demo-{self.run_id}-{name}")
            runner.start(background=True)
            self._runners.append(runner)
        self.serving = ServingThread(self.stack)
        self.url = self.serving.start()
        self._start_users()

    def _start_users(self) -> None:
        sim_cfg = self.config.simulator
        client = GatewayClient(
            self.url, model=self.config.model, timeout_s=sim_cfg.request_timeout_s, max_tokens=sim_cfg.max_tokens
        )
        events = ChatEventProducer(self.bus.producer(), self.topics.chat_events, self.settings.limits)
        population = Population.generate(sim_cfg.users, sim_cfg.seed, shared_catalogue())
        self.simulator = Simulator(
            sim_cfg, population, client, events, WallClock(sim_cfg.time_scale), on_turn=self._on_turn
        )
        self.users = SimThread(self.simulator, client)
        self.users.start()

    # -- trainers -----------------------------------------------------------------------
    def start_trainer(self) -> TrainerWorker:
        from trainers.worker import InMemoryLeaseStore

        # On the embedded bus one worker in one process: in-memory leases; on Kafka, Redis ones.
        leases = None if self.kafka else InMemoryLeaseStore()
        self.worker = make_worker(
            self.settings,
            self.bus,
            self.topics,
            leases,
            load_lock=self.load_lock,
            hold_after_publish=self.config.pause_training_during_canary,
        )
        self.worker.start()
        return self.worker

    # -- the base model ---------------------------------------------------------------
    def bootstrap_base(self, progress: Progress | None = None, timeout_s: float = 120.0) -> tuple[str, EvalReport]:
        """Evaluate the base model on the held-out prompts, publish it to the registry and
        to models.checkpoints (as any checkpoint), and wait until the gateway serves it."""
        from flywheel.demo import _trainers

        version = "base"
        if progress is not None:
            progress.status(stage="evaluating the base model on held-out prompts")
        manifest = _trainers.publish_base(self, version)
        producer = self.bus.producer()
        producer.produce(self.topics.models_checkpoints, manifest.to_json_bytes(), key=manifest.version)
        producer.flush()
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.stack.store.get(self.config.model)
            if state is not None and state.baseline_version == version and self.stack.gateway.slots.is_ready(version):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start serving the base model within {timeout_s:.0f}s")
            time.sleep(0.1)
        assert manifest.eval is not None
        return version, manifest.eval

    # -- stop -------------------------------------------------------------------------
    def stop(self) -> None:
        steps = [self.users.stop, self.serving.stop, *[r.stop for r in reversed(self._runners)]]
        if self.worker is not None:
            steps.insert(1, self.worker.stop)
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("stopping a demo component failed")
        self.stack.store.close()
        self.bus.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def now_utc() -> datetime:
    return datetime.now(UTC)


def check_vllm_serves(url: str, name: str, base_dir: Path) -> None:
    """ServingError unless the vLLM server at ``url`` serves ``base_dir`` as ``name``: the
    adapters this run trains only mean something over that very base."""
    import httpx

    from schemas import ServingError

    start = 'deploy/local/vllm.sh start "$(flywheel trainers bootstrap --path-only)"'
    try:
        models = httpx.get(f"{url}/v1/models", timeout=10).json().get("data", [])
    except (httpx.HTTPError, ValueError) as exc:
        raise ServingError(f"no vLLM server answers at {url} ({exc}); start one with {start}") from None
    served = {m.get("id"): m.get("root") for m in models}
    if name not in served:
        raise ServingError(f"the vLLM server at {url} serves {sorted(served)}, not {name!r}; start it with {start}")
    root = served[name]
    if root and Path(root).resolve() != base_dir.resolve():
        raise ServingError(f"the vLLM server at {url} serves {root} as {name!r}, but this run's base is {base_dir}")
