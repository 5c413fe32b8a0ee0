"""Ordinary requests under a flood of oversized and slow ones.

The gateway runs as `flywheel serve` does — the embedded engine on a tiny Llama with a
context of 384 tokens (built here, CPU), in its own process on 127.0.0.1 — with a small
queue (max_running 8, max_queued 8) and a 2 s deadline. Four ordinary clients send
short chat completions (16 tokens, closed loop); their latency is measured in three
phases:

- alone: nothing else;
- oversized: plus five clients sending, as fast as they are answered, 2 MB bodies
  (413 over the 1 MiB limit), 600 kB prompts (400, refused by length) and prompts of
  ~450 tokens in ~1,400 characters (400, refused by count);
- full: plus sixteen clients asking for the longest replies (360 tokens) and giving up
  after 0.25 s (the client leaves: its row must stop), which also keeps the queue full
  (429). A flood client that is refused waits 10 ms before the next request.

Last line printed: one JSON object (ordinary latencies in ms, how fast each kind of flood
request was refused, counts of each status seen).
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
from collections import Counter
from pathlib import Path

import httpx

# bench/serving.py shares this directory: keep it off the import path so `import serving`
# finds the package, and the repository root on it (tests._serving).
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

ORDINARY = int(os.environ.get("BENCH_ORDINARY_REQUESTS", "200"))
ORDINARY_CLIENTS = 4
ORDINARY_TOKENS = 16
CONTEXT = 384
SLOW_CLIENTS = 16
SLOW_TOKENS = 360
SLOW_GIVE_UP_S = 0.25
REFUSED_PAUSE_S = 0.01
GATEWAY = {"max_running": 8, "max_queued": 8, "request_timeout_s": 2.0}


def _serve(model_dir: Path, port_file: Path) -> None:
    import socket

    import uvicorn

    from serving import GatewayConfig, MemoryRoutingStore, create_app
    from serving.engines import EmbeddedEngine, EmbeddedEngineConfig, ModelSource
    from serving.gateway import Gateway
    from serving.hotswap import ModelSlots
    from tests._serving import state

    engine = EmbeddedEngine(EmbeddedEngineConfig(device="cpu", max_batch_size=8, batch_wait_ms=2.0, threads=1))
    slots = ModelSlots(engine)
    asyncio.run(slots.load(ModelSource("v1", model_dir)))
    store = MemoryRoutingStore()
    store.put(state(baseline="v1"))
    app = create_app(Gateway(GatewayConfig.model_validate(GATEWAY), store, slots))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(port_file)  # the parent never reads a half-written file
    server.run(sockets=[sock])


def _body(text: str, max_tokens: int) -> bytes:
    doc = {"model": "policy", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    return json.dumps({**doc, "temperature": 0}).encode()


FLOOD_BODIES = {
    "2mb_body": _body("hello there friend " * 110_000, 16),
    "600kb_prompt": _body("hello there " * 50_000, 16),
    "counted_prompt": _body("ab " * 450, 16),
}
HEADERS = {"content-type": "application/json"}
_STATUS_NAMES = {0: "gave_up", -1: "connection_error"}


async def _phase(url: str, oversized: bool, slow: bool) -> dict[str, object]:
    latencies: list[float] = []
    ordinary_status: Counter[int] = Counter()
    flood_status: Counter[int] = Counter()
    refusals: dict[str, list[float]] = {}  # kind of flood request -> seconds to its refusal
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def ordinary(worker: int, todo: list[int]) -> None:
            while todo:
                i = todo.pop()
                body = _body(f"hello there friend number {i}", ORDINARY_TOKENS)
                t = time.perf_counter()
                r = await client.post("/v1/chat/completions", content=body, headers=HEADERS)
                ordinary_status[r.status_code] += 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)

        async def flood(kind: str, body: bytes, give_up_s: float | None) -> None:
            while not stop.is_set():
                try:
                    t = time.perf_counter()
                    r = await client.post(
                        "/v1/chat/completions", content=body, headers=HEADERS, timeout=give_up_s or 60
                    )
                    flood_status[r.status_code] += 1
                    if r.status_code != 200:
                        refusals.setdefault(f"{kind}_{r.status_code}", []).append(time.perf_counter() - t)
                        await asyncio.sleep(REFUSED_PAUSE_S)
                except httpx.TimeoutException:
                    flood_status[0] += 1  # gave up: the client left
                except httpx.HTTPError:
                    flood_status[-1] += 1  # the connection broke (e.g. closed while a body was sent)

        tasks = []
        if oversized:
            for name in ("2mb_body", "2mb_body", "600kb_prompt", "600kb_prompt", "counted_prompt"):
                tasks.append(asyncio.ensure_future(flood(name, FLOOD_BODIES[name], None)))
        if slow:
            for i in range(SLOW_CLIENTS):
                long_body = _body(f"tell me a long story number {i}", SLOW_TOKENS)
                tasks.append(asyncio.ensure_future(flood("slow", long_body, SLOW_GIVE_UP_S)))
        await asyncio.sleep(0.5 if tasks else 0)  # let the flood build up first
        todo = list(range(ORDINARY))
        started = time.perf_counter()
        await asyncio.gather(*(ordinary(w, todo) for w in range(ORDINARY_CLIENTS)))
        wall_s = time.perf_counter() - started
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "p50_ms": round(_pct(latencies, 0.5), 1),
        "p99_ms": round(_pct(latencies, 0.99), 1),
        "ordinary_status": dict(sorted(ordinary_status.items())),
        "flood_status": {_STATUS_NAMES.get(k, str(k)): v for k, v in sorted(flood_status.items())},
        # Client-side: sending the request (2 MB for the 413s) and reading the refusal.
        "refusal_p50_ms": {k: round(_pct(v, 0.5), 1) for k, v in sorted(refusals.items())},
        "refusal_p99_ms": {k: round(_pct(v, 0.99), 1) for k, v in sorted(refusals.items())},
        "wall_s": round(wall_s, 2),
    }


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path) -> str:
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}"
    while True:
        try:
            if httpx.get(url + "/ready").status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not become ready")
        time.sleep(0.2)


def main() -> None:
    from tests._serving import build_tiny_llama

    work = Path(tempfile.mkdtemp(prefix="flywheel-flood-"))
    model_dir = build_tiny_llama(work / "tiny", max_positions=CONTEXT, endless=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)}
    port_file = work / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(model_dir), str(port_file)], env=env)
    out: dict[str, object] = {
        "bench": "flood",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "context_tokens": CONTEXT,
        "ordinary_requests": ORDINARY,
        "ordinary_clients": ORDINARY_CLIENTS,
        "ordinary_tokens": ORDINARY_TOKENS,
        "gateway": GATEWAY,
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
    }
    try:
        url = _wait_ready(proc, port_file)
        for i in range(20):  # warm-up
            httpx.post(url + "/v1/chat/completions", content=_body(f"warm up {i}", ORDINARY_TOKENS), headers=HEADERS)
        phases = {
            "alone": asyncio.run(_phase(url, oversized=False, slow=False)),
            "oversized": asyncio.run(_phase(url, oversized=True, slow=False)),
            "full": asyncio.run(_phase(url, oversized=True, slow=True)),
        }
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    out["phases"] = phases
    out["ordinary_p50_ms_without_flood"] = phases["alone"]["p50_ms"]
    out["ordinary_p99_ms_without_flood"] = phases["alone"]["p99_ms"]
    out["ordinary_p50_ms_with_flood"] = phases["full"]["p50_ms"]
    out["ordinary_p99_ms_with_flood"] = phases["full"]["p99_ms"]
    seen: Counter[str] = Counter()
    for phase in phases.values():
        for status_counts in (phase["ordinary_status"], phase["flood_status"]):
            assert isinstance(status_counts, dict)
            seen.update({str(k): v for k, v in status_counts.items()})
    out["count_400"], out["count_413"], out["count_429"] = seen["400"], seen["413"], seen["429"]
    out["count_504"] = seen["504"]
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
