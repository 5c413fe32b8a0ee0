"""The gateway object and the FastAPI app factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from schemas import ServingError
from serving.engines.base import Engine
from serving.gateway.errors import install_error_handlers
from serving.gateway.events import EventLogger
from serving.gateway.gateway_config import GatewayConfig
from serving.gateway.guard import RequestGuard
from serving.gateway.handler import ChatHandler
from serving.gateway.routes import router
from serving.hotswap.slots import ModelSlots
from serving.routing import RoutingStore

if TYPE_CHECKING:
    from serving.admin.service import AdminService

log = logging.getLogger(__name__)


class Gateway:
    """Everything one gateway replica holds: routing store, engine slots, event logger."""

    def __init__(
        self, config: GatewayConfig, store: RoutingStore, slots: ModelSlots | Engine, events: EventLogger | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.slots = slots if isinstance(slots, ModelSlots) else ModelSlots(slots)
        self.events = events
        self.handler = ChatHandler(config, store, self.slots, events)

    def not_ready(self) -> list[str]:
        """Public models that cannot be served here yet: their baseline, or the candidate of
        a running canary, is not loaded on this replica."""
        missing = []
        for name in self.config.models:
            state = self.store.get(name)
            if state is None or state.baseline_version is None or not self.slots.is_ready(state.baseline_version):
                missing.append(name)
                continue
            canary = state.candidate_version is not None and state.status in ("canary", "paused")
            if canary and not self.slots.is_ready(state.candidate_version or ""):
                missing.append(name)
        return missing

    def warm(self) -> None:
        """Read each public model's routing once, so that a store which caches it (Redis)
        holds it before the first request; run off the event loop. A store that cannot be
        read yet is left to answer requests with its typed error."""
        for name in self.config.models:
            try:
                self.store.get(name)
            except ServingError as exc:
                log.warning("routing for %s not readable at start-up: %s", name, exc)

    def start(self) -> None:
        if self.events is not None:
            self.events.start()

    def stop(self) -> None:
        if self.events is not None:
            self.events.stop()


def create_app(gateway: Gateway, admin: AdminService | None = None, manage_lifecycle: bool = True) -> FastAPI:
    """The gateway's ASGI app: OpenAI API, /health, /ready, /metrics, and the admin API
    under /admin when ``admin`` is given (the process that runs the deployment controller).
    In front of all of them, ``RequestGuard``: API keys on /v1 and the body-size limit.

    With ``manage_lifecycle`` the app's lifespan starts and stops the gateway (event
    logger thread); pass False when the caller does that itself.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(gateway.warm)
        if manage_lifecycle:
            gateway.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                gateway.stop()

    app = FastAPI(title="Flywheel gateway", lifespan=lifespan)
    app.state.gateway = gateway
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body_bytes=gateway.config.max_body_bytes, api_keys=gateway.config.api_keys)
    app.include_router(router)
    if admin is not None:
        from serving.admin.routes import router as admin_router

        app.state.admin = admin
        app.include_router(admin_router)
    return app
