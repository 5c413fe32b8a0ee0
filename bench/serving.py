"""Gateway overhead: latency of a chat completion through the gateway (HTTP, routing,
lease, SSE relay, metrics, chat-event logging into an in-process bus) minus the latency
of calling the same engine directly, at a fixed concurrency.

The engine is the deterministic scripted engine (fixed per-token delay), so its own
cost is known and stable and the difference is the gateway's. The gateway runs in a
separate process (uvicorn on 127.0.0.1), as in production; the client is a minimal
keep-alive HTTP/1.1 client on asyncio streams, so a client library's own cost is not
counted as gateway overhead.
Last line printed: one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# This file is named like the `serving` package: keep bench/ off the import path so
# `import serving` finds the package, and the repository root on it (tests._serving).
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1500"))
CONCURRENCY_LEVELS = tuple(int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,4").split(","))
CONCURRENCY = CONCURRENCY_LEVELS[0]
TOKENS = int(os.environ.get("BENCH_TOKENS", "16"))
# 0: the engine costs microseconds, so the latency through the gateway is its overhead.
TOKEN_DELAY_S = float(os.environ.get("BENCH_TOKEN_DELAY_S", "0"))


def _app():
    from schemas import Topics
    from serving import GatewayConfig, MemoryRoutingStore, create_app
    from serving.engines import ModelSource
    from serving.gateway import EventLogger, Gateway
    from serving.hotswap import ModelSlots
    from streams import EmbeddedBus
    from tests._serving import state
    from tests.kits.scripted_engine import ScriptedEngine

    engine = ScriptedEngine(token_delay_s=TOKEN_DELAY_S)
    asyncio.run(engine.load(ModelSource("v1", None)))
    asyncio.run(engine.load(ModelSource("v2", None)))
    slots = ModelSlots(engine)
    slots.mark_ready("v1")
    slots.mark_ready("v2")
    store = MemoryRoutingStore()
    store.put(state(baseline="v1", candidate="v2", share_bp=2000, status="canary"))
    topics = Topics("bench")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    return create_app(
        Gateway(GatewayConfig(), store, slots, EventLogger(bus.producer(), topics.chat_events, capacity=1_000_000))
    )


def _serve(port_file: Path) -> None:
    """Serve on a port the kernel picks (bound here, so no other process can take it in
    between) and write that port to ``port_file`` for the parent."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_app(), log_level="warning", access_log=False))
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(port_file)  # the parent never reads a half-written file
    server.run(sockets=[sock])


async def _direct() -> list[float]:
    from serving.engines import GenerationRequest, ModelSource, SamplingParams
    from tests.kits.scripted_engine import ScriptedEngine

    engine = ScriptedEngine(token_delay_s=TOKEN_DELAY_S)
    await engine.load(ModelSource("v1", None))
    params = SamplingParams(max_tokens=TOKENS)
    latencies: list[float] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        async for _ in engine.generate(
            "v1", GenerationRequest(f"r{i}", ({"role": "user", "content": "hello"},), params)
        ):
            pass
        latencies.append(time.perf_counter() - t)

    await _run(one)
    return latencies


class _RawHttp:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: it costs the benchmark
    almost nothing, so the measured time is the gateway's and the loopback's, not a
    client library's."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(data[:-2])
            return status, b"".join(parts)
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _gateway(url: str, stream: bool) -> list[float]:
    latencies: list[float] = []
    host, port = url.removeprefix("http://").split(":")
    clients = [_RawHttp(host, int(port)) for _ in range(CONCURRENCY)]
    free = list(clients)

    async def one(i: int) -> None:
        client = free.pop()
        body = json.dumps(
            {
                "model": "policy",
                "user": f"user-{i % 500}",
                "max_tokens": TOKENS,
                "stream": stream,
                "messages": [{"role": "user", "content": "hello"}],
            }
        ).encode()
        t = time.perf_counter()
        status, payload = await client.post("/v1/chat/completions", body)
        latencies.append(time.perf_counter() - t)
        free.append(client)
        assert status == 200 and (payload.endswith(b"data: [DONE]\n\n") if stream else payload.startswith(b"{")), (
            payload[:200]
        )

    await _run(one, warmup=100)
    for c in clients:
        await c.close()
    return latencies


async def _run(one, warmup: int = 50) -> None:
    for i in range(warmup):
        await one(-1 - i)
    queue = iter(range(REQUESTS))

    async def worker() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0


def main() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)}
    port_file = Path(tempfile.mkdtemp(prefix="flywheel-bench-")) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        while True:
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.2)
        out: dict[str, object] = {
            "bench": "serving",
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "requests": REQUESTS,
            "concurrency": list(CONCURRENCY_LEVELS),
            "tokens": TOKENS,
            "token_delay_ms": TOKEN_DELAY_S * 1000,
            "loadavg_1m_start": round(os.getloadavg()[0], 2),
        }
        global CONCURRENCY
        for level in CONCURRENCY_LEVELS:
            CONCURRENCY = level
            direct = asyncio.run(_direct())
            cpu0 = _cpu_s(proc.pid)
            nonstream = asyncio.run(_gateway(url, stream=False))
            cpu1 = _cpu_s(proc.pid)
            stream = asyncio.run(_gateway(url, stream=True))
            cpu2 = _cpu_s(proc.pid)
            c = f"c{level}"
            out[f"{c}_direct_p50_ms"] = round(_pct(direct, 0.5), 3)
            out[f"{c}_direct_p99_ms"] = round(_pct(direct, 0.99), 3)
            for name, lat in (("nonstream", nonstream), ("stream", stream)):
                out[f"{c}_{name}_p50_ms"] = round(_pct(lat, 0.5), 3)
                out[f"{c}_{name}_p99_ms"] = round(_pct(lat, 0.99), 3)
                out[f"{c}_{name}_overhead_p50_ms"] = round(_pct(lat, 0.5) - _pct(direct, 0.5), 3)
                out[f"{c}_{name}_overhead_p99_ms"] = round(_pct(lat, 0.99) - _pct(direct, 0.99), 3)
            # CPU the gateway process spent per request (warm-up included): robust to other load on the machine.
            calls = REQUESTS + 100
            out[f"{c}_nonstream_gateway_cpu_ms_per_request"] = round((cpu1 - cpu0) / calls * 1000, 3)
            out[f"{c}_stream_gateway_cpu_ms_per_request"] = round((cpu2 - cpu1) / calls * 1000, 3)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(port_file.parent, ignore_errors=True)
    first = f"c{CONCURRENCY_LEVELS[0]}"
    out["overhead_p50_ms"] = out[f"{first}_nonstream_overhead_p50_ms"]
    out["overhead_p99_ms"] = out[f"{first}_nonstream_overhead_p99_ms"]
    out["target_p50_overhead_ms"] = 2.0
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(Path(sys.argv[2]))
    else:
        main()
