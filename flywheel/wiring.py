"""The composition root: every process of the platform — `flywheel serve`, `flywheel
streams run`, `flywheel trainers run` and the one-process `flywheel demo` — builds its
parts here, from one FlywheelSettings. The demo differs only in the settings it passes
(its overlay, flywheel/demo/_platform.py) and in the bus and lock it shares between
parts."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from flywheel.settings import FlywheelSettings
from schemas import Topics
from serving import (
    AdminService,
    CanaryController,
    EmbeddedEngine,
    EventLogger,
    Gateway,
    HotSwapController,
    MemoryRoutingStore,
    ModelSlots,
    ModelSource,
    RedisRoutingStore,
    RoutingStore,
    VllmEngine,
    create_app,
)
from serving.canary import RequestCountPublisher, fleet_error_counts
from serving.engines import Engine
from serving.leader import Leadership, RedisLease, default_replica_id
from streams import Bus, EmbeddedBus, KafkaBus
from streams.processors import BufferProcessor, CurationProcessor, Processor, SignalsProcessor

if TYPE_CHECKING:  # the trainers import torch: only a process that trains loads them
    from trainers.worker import LeaseStore
    from trainers.worker.worker import TrainerWorker

log = logging.getLogger(__name__)


def make_bus(settings: FlywheelSettings) -> Bus:
    if settings.bus == "embedded":
        return EmbeddedBus()
    return KafkaBus(settings.kafka)


# -- streams ---------------------------------------------------------------------------
PROCESSORS = ("signals", "curation", "buffer")


def make_processor(name: str, settings: FlywheelSettings, topics: Topics) -> Processor:
    """The stream processor ``name`` (one of PROCESSORS) configured from ``settings``."""
    cfg = settings.streams
    if name == "signals":
        return SignalsProcessor(cfg.signals, limits=settings.limits)
    if name == "curation":
        return CurationProcessor(cfg.curation, limits=settings.limits)
    if name == "buffer":
        return BufferProcessor(cfg.buffer, topic_names={t: topics.name(t) for t in BufferProcessor.inputs})
    raise ValueError(f"unknown processor {name!r}; choose one of {', '.join(PROCESSORS)}")


# -- trainers ----------------------------------------------------------------------------
def make_worker(
    settings: FlywheelSettings,
    bus: Bus,
    topics: Topics,
    leases: LeaseStore | None = None,
    *,
    worker_id: str | None = None,
    load_lock: threading.Lock | None = None,
    hold_after_publish: bool = False,
) -> TrainerWorker:
    """A trainer worker on ``bus``; its job leases in Redis unless ``leases`` is given."""
    from trainers.worker import RedisLeaseStore
    from trainers.worker.worker import TrainerWorker

    cfg = settings.trainers
    return TrainerWorker(
        bus,
        topics,
        cfg,
        leases if leases is not None else RedisLeaseStore(settings.redis_url, cfg.lease_prefix),
        worker_id=worker_id,
        load_lock=load_lock,
        hold_after_publish=hold_after_publish,
    )


# -- serving ------------------------------------------------------------------------------
@dataclass
class ServingStack:
    """Everything `flywheel serve` runs, built from settings (also usable from code)."""

    bus: Bus
    store: RoutingStore
    engine: Engine
    gateway: Gateway
    canary: CanaryController
    hotswap: HotSwapController
    admin: AdminService
    leadership: Leadership
    request_counts: RequestCountPublisher

    def app(self):
        return create_app(self.gateway, self.admin, manage_lifecycle=False)


def build_serving(
    settings: FlywheelSettings,
    engine_name: str | None = None,
    vllm_urls: tuple[str, ...] = (),
    routing: str | None = None,
    engine_override: Engine | None = None,
    *,
    bus: Bus | None = None,
    load_lock: threading.Lock | None = None,
) -> ServingStack:
    """The stack of one replica. ``engine_override`` replaces the configured engine (code
    only: tests run real replicas on an engine double); ``bus``: one the process already has
    (the demo's in-process bus); ``load_lock`` is held by the embedded engine while it loads
    a model, for a process that also trains (transformers' loads patch process-wide state)."""
    cfg = settings.serving
    topics = settings.topics
    bus = bus or make_bus(settings)
    wanted = {topics.chat_events, topics.engagement_signals, topics.models_checkpoints, topics.serving_deployments}
    bus.create_topics(s for s in topics.specs() if s.name in wanted)
    model = cfg.gateway.models[0]
    store: RoutingStore
    if (routing or cfg.routing_store) == "memory":
        store = MemoryRoutingStore()
        leadership = Leadership.single_process(model)
    else:
        store = RedisRoutingStore(settings.redis_url, prefix=cfg.routing_prefix)
        replica = cfg.leader.replica_id or default_replica_id()
        lease = RedisLease(settings.redis_url, cfg.routing_prefix, model, replica, cfg.leader.lease_ttl_s)
        # A new leader raises the store's fence before it acts: its predecessor's late writes are refused.
        leadership = Leadership(cfg.leader, lease, model, on_acquired=lambda token: store.claim(model, token))
    engine: Engine
    if engine_override is not None:
        engine = engine_override
    elif (engine_name or cfg.engine) == "vllm":
        vcfg = cfg.vllm.model_copy(update={"urls": vllm_urls}) if vllm_urls else cfg.vllm
        engine = VllmEngine(vcfg)
    else:
        engine = EmbeddedEngine(cfg.embedded, load_lock=load_lock)
    slots = ModelSlots(engine)
    events = EventLogger(bus.producer(), topics.chat_events, capacity=cfg.gateway.event_buffer_size)
    gateway = Gateway(cfg.gateway, store, slots, events)
    canary = CanaryController(
        cfg.canary, model, store, bus, topics, error_counts=fleet_error_counts(store, model), leadership=leadership
    )
    hotswap = HotSwapController(cfg.hotswap, model, slots, canary, bus, topics)
    admin = AdminService(cfg.admin, {model: canary})
    counts = RequestCountPublisher(store, model, cfg.request_counts_interval_s)
    return ServingStack(bus, store, engine, gateway, canary, hotswap, admin, leadership, counts)


async def serve_stack(
    stack: ServingStack,
    host: str,
    port: int,
    base: tuple[str, Path | None] | None,
    sock: socket.socket | None = None,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Run one replica until it is stopped. ``sock``: an already bound socket to serve on
    instead of ``host``/``port`` (tests and the demo bind port 0 and read the port the
    kernel gave). ``on_server`` gets the uvicorn server before it starts: a caller on
    another thread stops the replica with ``server.should_exit = True``."""
    stack.leadership.start()
    if base is not None:
        version, path = base
        await stack.gateway.slots.load(ModelSource(version, path))
        # Deployed as the first baseline by whichever replica leads, once nothing is deployed yet;
        # a replica joining a running fleet does not reset what the fleet serves.
        stack.hotswap.base = version
    stack.gateway.start()
    stack.request_counts.start()
    stack.hotswap.start()
    stop = threading.Event()

    def evaluate() -> None:
        while not stop.wait(stack.canary.config.poll_interval_s):
            try:
                stack.canary.evaluate_once(datetime.now(UTC))
            except Exception:  # keep evaluating; the failure is logged
                log.exception("canary evaluation failed")

    thread = threading.Thread(target=evaluate, name="canary", daemon=True)
    thread.start()
    # No access log: a line per request costs the gateway CPU, and its metrics and chat
    # events already record every request.
    config = uvicorn.Config(stack.app(), host=host, port=port, log_level="info", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    if on_server is not None:
        on_server(server)
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        stop.set()
        await stack.hotswap.stop()
        stack.leadership.stop()  # frees the lease: a successor need not wait for it to lapse
        stack.request_counts.stop()
        stack.gateway.stop()
        stack.canary.close()
        await stack.engine.close()


# Client libraries that log every HTTP request at INFO would drown our own progress logs.
_CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "urllib3", "uvicorn.access", "aiokafka", "faust")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
