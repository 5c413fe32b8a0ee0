"""`flywheel serve`: the OpenAI-compatible gateway with its engine, hot-swap controller,
canary controller and admin API in one process.

Any number of these processes may serve one model (Redis routing): they elect a leader
through a Redis lease, and only the leader takes canary and hot-swap decisions; every
replica loads what the shared routing state names and adds its request counts to the
shared ones. With memory routing the one process is the leader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from flywheel.settings import FlywheelSettings
from flywheel.wiring import build_serving, serve_stack
from schemas import FlywheelError

log = logging.getLogger(__name__)


class EngineName(StrEnum):
    embedded = "embedded"
    vllm = "vllm"


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the serving loop on uvloop where it is installed (the ``serve`` extra), as
    ``uvicorn.run`` does: a stream relayed from vLLM wakes the loop once per token, so the
    loop's own cost is a large share of the gateway's CPU (docs/benchmarks.md, vLLM)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


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
        _run(serve_stack(stack, host or gw.host, port if port is not None else gw.port, base))
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
