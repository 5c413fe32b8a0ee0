"""`flywheel serve` wiring: help text, and the stack it builds from settings."""

from __future__ import annotations

import asyncio

import httpx
from typer.testing import CliRunner

from flywheel.cli import app
from flywheel.settings import load_settings
from flywheel.wiring import build_serving
from serving import EmbeddedEngine, MemoryRoutingStore, VllmEngine


def test_serve_help_reads_well() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--engine", "--vllm-url", "--model-dir", "--routing", "--port"):
        assert option in result.output


def test_build_serving_from_settings() -> None:
    settings = load_settings(bus="embedded")
    stack = build_serving(settings, routing="memory")
    assert isinstance(stack.engine, EmbeddedEngine) and isinstance(stack.store, MemoryRoutingStore)
    vllm = build_serving(settings, engine_name="vllm", vllm_urls=("http://10.0.0.1:8000",), routing="memory")
    assert isinstance(vllm.engine, VllmEngine) and vllm.engine.config.urls == ("http://10.0.0.1:8000",)

    async def probe() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app()), base_url="http://gw") as c:
            ready = await c.get("/ready")
            admin = await c.get("/admin/deployments", headers={"Authorization": "Bearer x"})
            return ready.status_code, admin.status_code

    assert asyncio.run(probe()) == (503, 404)  # nothing deployed yet; no admin token = admin disabled
    asyncio.run(vllm.engine.close())
