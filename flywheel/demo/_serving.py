"""The serving replica of the one-process deployment, on a thread of its own: the very
loop `flywheel serve` runs (flywheel.wiring.serve_stack: gateway, hot-swap controller,
canary evaluation thread, leadership), on 127.0.0.1 and a port the kernel picks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

from flywheel.wiring import ServingStack, serve_stack

if TYPE_CHECKING:
    import uvicorn


class ServingThread:
    """``start()`` returns the replica's URL once it listens; ``stop()`` ends it."""

    def __init__(self, stack: ServingStack) -> None:
        self.stack = stack
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None
        self.url = ""

    def start(self, timeout_s: float = 30.0) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._run, args=(sock, host, port), name="demo-serving", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not (self._server is not None and self._server.started):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the gateway failed to start: {self._error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {timeout_s:.0f}s")
            time.sleep(0.01)
        return self.url

    def _run(self, sock: socket.socket, host: str, port: int) -> None:
        def keep(server: uvicorn.Server) -> None:
            self._server = server

        try:
            asyncio.run(serve_stack(self.stack, host, port, None, sock, on_server=keep))
        except BaseException as exc:  # surfaced by start(), or logged by the caller's stop()
            self._error = exc

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._error is not None:
            raise RuntimeError(f"the gateway stopped on an error: {self._error}")
