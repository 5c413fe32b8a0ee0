"""Latency between a canary's arms on the embedded engine, as an A/A test.

The same checkpoint is loaded twice, as ``baseline`` and ``candidate``, and closed-loop
clients send each request to the candidate with probability ``--share`` (the demo's first
canary step is 20 %), with the demo's reply budget and sampling. The two arms are the same
model, so any difference in their latency is the engine's scheduling. The canary's latency
guardrail counts the share of each arm's replies slower than the baseline's p95 and allows
the candidate 5 points more (``latency_over_baseline_p95``): here that excess must be near 0.

Usage: python bench/arm_latency.py [--clients 48] [--requests 1200] [--share 0.2]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402

from serving.engines.base import GenerationRequest, ModelSource, SamplingParams  # noqa: E402
from serving.engines.embedded import EmbeddedEngine  # noqa: E402
from serving.engines.embedded_config import EmbeddedEngineConfig  # noqa: E402
from trainers.bootstrap.base_model import ensure_base_model  # noqa: E402
from trainers.characters import CHARACTERS_BY_ID, EvalPrompt, chat_messages, held_out_prompts  # noqa: E402

ARMS = ("baseline", "candidate")


Plan = list[tuple[str, EvalPrompt]]


def _plan(n_requests: int, share: float, seed: int) -> Plan:
    """Each request's arm (the candidate with probability ``share``) and held-out prompt."""
    prompts = held_out_prompts()
    rng = random.Random(seed)
    return [(ARMS[rng.random() < share], prompts[rng.randrange(len(prompts))]) for _ in range(n_requests)]


async def _reply(
    engine: EmbeddedEngine, i: int, plan: Plan, max_tokens: int, latencies: dict[str, list[float]]
) -> None:
    """Request ``plan[i]`` and add its whole reply's latency (s) to its arm's."""
    arm, prompt = plan[i]
    messages = tuple(m.model_dump() for m in chat_messages(CHARACTERS_BY_ID[prompt.character_id], prompt.user_message))
    request = GenerationRequest(f"r{i}", messages, SamplingParams(max_tokens=max_tokens, temperature=1.0))
    start = time.perf_counter()
    async for _ in engine.generate(arm, request):
        pass
    latencies[arm].append(time.perf_counter() - start)


async def _clients(engine: EmbeddedEngine, n_clients: int, plan: Plan, max_tokens: int) -> dict[str, list[float]]:
    """Per arm, the reply latencies when ``n_clients`` clients each send their next request
    as soon as their last reply ended."""
    latencies: dict[str, list[float]] = {arm: [] for arm in ARMS}
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < len(plan):
            i, next_index = next_index, next_index + 1
            await _reply(engine, i, plan, max_tokens, latencies)

    await asyncio.gather(*(client() for _ in range(n_clients)))
    return latencies


async def _waves(
    engine: EmbeddedEngine, wave: int, every_s: float, plan: Plan, max_tokens: int
) -> dict[str, list[float]]:
    """Per arm, the reply latencies when requests arrive in waves: ``wave`` at once every
    ``every_s`` (the demo's simulator starts its users' turns in steps, so its traffic
    comes in bursts)."""
    latencies: dict[str, list[float]] = {arm: [] for arm in ARMS}
    tasks = []
    for first in range(0, len(plan), wave):
        batch = range(first, min(first + wave, len(plan)))
        tasks += [asyncio.create_task(_reply(engine, i, plan, max_tokens, latencies)) for i in batch]
        await asyncio.sleep(every_s)
    await asyncio.gather(*tasks)
    return latencies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=48, help="closed-loop clients (the demo's concurrency)")
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--share", type=float, default=0.2, help="the candidate's share of requests")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32, help="the demo's embedded max_batch_size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wave", type=int, default=0, help="send requests in waves of this many (0: closed loop)")
    parser.add_argument("--every-s", type=float, default=1.0, help="seconds between waves")
    args = parser.parse_args()
    engine = EmbeddedEngine(EmbeddedEngineConfig(max_batch_size=args.max_batch_size, threads=1))
    base = ensure_base_model()
    for arm in ARMS:
        await engine.load(ModelSource(arm, base))
    await _clients(engine, args.clients, _plan(64, args.share, args.seed + 1), args.max_tokens)  # warm-up
    plan = _plan(args.requests, args.share, args.seed)
    start = time.perf_counter()
    if args.wave:
        lat = await _waves(engine, args.wave, args.every_s, plan, args.max_tokens)
    else:
        lat = await _clients(engine, args.clients, plan, args.max_tokens)
    seconds = time.perf_counter() - start
    await engine.close()
    p95 = float(np.percentile(lat["baseline"], 95))
    slow = {arm: sum(x > p95 for x in lat[arm]) / len(lat[arm]) for arm in ARMS}
    out: dict[str, object] = {"bench": "arm_latency", **{k: v for k, v in vars(args).items()}}
    for arm in ARMS:
        print(
            f"{arm}: {len(lat[arm])} replies, p50 {statistics.median(lat[arm]) * 1000:.0f} ms, "
            f"p95 {np.percentile(lat[arm], 95) * 1000:.0f} ms, over the baseline's p95 {slow[arm]:.1%}",
            flush=True,
        )
        out[f"{arm}_replies"] = len(lat[arm])
        out[f"{arm}_p50_ms"] = round(statistics.median(lat[arm]) * 1000, 1)
        out[f"{arm}_p95_ms"] = round(float(np.percentile(lat[arm], 95)) * 1000, 1)
        out[f"{arm}_over_baseline_p95"] = round(slow[arm], 4)
    out["candidate_over_baseline_p50_ratio"] = round(
        statistics.median(lat["candidate"]) / statistics.median(lat["baseline"]), 3
    )
    out["slow_share_excess"] = round(slow["candidate"] - slow["baseline"], 4)
    out["replies_per_s"] = round(args.requests / seconds, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
