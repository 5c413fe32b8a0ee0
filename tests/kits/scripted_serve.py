"""`flywheel serve` on the scripted engine, for tests that run several real gateway
processes cheaply: the CLI's own stack and serve loop (``build_serving``, ``serve_stack``),
settings from the FLYWHEEL_* environment, with a ``ScriptedEngine`` as the engine (no
model, no torch). It binds 127.0.0.1 on port 0 and prints ``port <n>`` as its first line.

    python -m tests.kits.scripted_serve
"""

from __future__ import annotations

import asyncio
import socket

from flywheel.settings import load_settings
from flywheel.wiring import build_serving, configure_logging, serve_stack
from tests.kits.scripted_engine import ScriptedEngine


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    stack = build_serving(settings, engine_override=ScriptedEngine())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(f"port {sock.getsockname()[1]}", flush=True)
    asyncio.run(serve_stack(stack, "127.0.0.1", 0, None, sock=sock))


if __name__ == "__main__":
    main()
