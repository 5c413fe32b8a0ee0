"""`flywheel serve`: the OpenAI-compatible gateway with its engine, hot-swap controller,
canary controller and admin API in one process.

Any number of these processes may serve one model (Redis routing): they elect a leader
through a Redis lease, and only the leader takes canary and hot-swap decisions; every
replica loads what the shared routing state names and adds its request counts to the
shared ones. With memory routing the one process is the leader."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from flywheel.settings import FlywheelSettings
from flywheel.wiring import make_bus
from schemas import FlywheelError
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
from streams import Bus

log = logging.getLogger(__name__)


class EngineName(StrEnum):
    embedded = "embedded"
    vllm = "vllm"


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
) -> ServingStack:
    """The stack of one replica. ``engine_override`` replaces the configured engine (code
    only: tests run real replicas on an engine double)."""
    cfg = settings.serving
    topics = settings.topics
    bus = make_bus(settings)
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
        engine = EmbeddedEngine(cfg.embedded)
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


async def _serve(
    stack: ServingStack,
    host: str,
    port: int,
    base: tuple[str, Path | None] | None,
    sock: socket.socket | None = None,
) -> None:
    """Run one replica until it is stopped. ``sock``: an already bound socket to serve on
    instead of ``host``/``port`` (tests bind port 0 and read the port the kernel gave)."""
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


def serve(
    ctx: typer.Context,
    engine: Annotated[
        EngineName | None,
        typer.Option(
            "--engine",
            "-e",
            help="embedded: transformers in this process (default); vllm: a client of vLLM servers (--vllm-url).",
        ),
    ] = None,
    vllm_url: Annotated[
        list[str] | None, typer.Option("--vllm-url", help="Base URL of a vLLM replica; repeat for several.")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Serve this local checkpoint folder (safetensors) as "
            "the baseline before any checkpoint arrives on models.checkpoints.",
        ),
    ] = None,
    base_version: Annotated[
        str,
        typer.Option(
            "--base-version",
            help="Version name of --model-dir (with vllm: the version the "
            "replicas already serve as <model>@<version>).",
        ),
    ] = "base",
    routing: Annotated[
        str | None, typer.Option("--routing", help="redis (replicas agree; default) or memory (one process).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="Port to listen on.")] = None,
) -> None:
    """Serve the OpenAI-compatible API (/v1/chat/completions, /v1/models), /health, /ready,
    /metrics and the admin API (/admin, when FLYWHEEL_SERVING__ADMIN__TOKEN is set).

    New checkpoints on models.checkpoints are loaded, health-checked and put on canary; the canary promotes or rolls them back from engagement.signals.
    """
    settings: FlywheelSettings = ctx.obj
    if routing not in (None, "redis", "memory"):
        raise typer.BadParameter("use redis or memory", param_hint="--routing")
    try:
        stack = build_serving(settings, engine.value if engine else None, tuple(vllm_url or ()), routing)
        chosen = engine.value if engine else settings.serving.engine
        base: tuple[str, Path | None] | None = None
        if model_dir is not None:
            base = (base_version, model_dir)
        elif chosen == "vllm":
            base = (base_version, None)
        gw = settings.serving.gateway
        asyncio.run(_serve(stack, host or gw.host, port if port is not None else gw.port, base))
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
