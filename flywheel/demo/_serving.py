"""The serving side of the one-process deployment: the gateway on a local port (uvicorn),
and the hot-swap and canary controllers ticking on the same event loop as the engine's
requests."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp

log = logging.getLogger(__name__)


class ServingThread:
    """Runs ``app`` on 127.0.0.1:<free port> and calls ``tick()`` every ``interval_s``."""

    def __init__(
        self,
        app: ASGIApp,
        tick: Callable[[], asyncio.Future[None] | object],
        interval_s: float,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self._app = app
        self._tick = tick
        self._interval_s = interval_s
        self._on_close = on_close
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.url = ""
        self.ticks = 0

    def start(self, timeout_s: float = 30.0) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(sock)), name="demo-serving", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"gateway did not start within {timeout_s:.0f}s: {self._error}")
        if self._error is not None:
            raise RuntimeError(f"gateway failed to start: {self._error}")
        return self.url

    async def _main(self, sock: socket.socket) -> None:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(self._app, log_level="warning", lifespan="on", access_log=False))
        serve = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if serve.done():
                    self._error = serve.exception() or RuntimeError("server exited")
                    self._ready.set()
                    return
                await asyncio.sleep(0.01)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    result = self._tick()
                    if asyncio.iscoroutine(result):
                        await result
                    self.ticks += 1
                except Exception:  # a failed control step must not take the gateway down
                    log.exception("control step failed")
                await asyncio.sleep(self._interval_s)
        finally:
            server.should_exit = True
            await serve
            if self._on_close is not None:
                result = self._on_close()
                if asyncio.iscoroutine(result):
                    await result

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def utc_now() -> datetime:
    return datetime.now(UTC)
