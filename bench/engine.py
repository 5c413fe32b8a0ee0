"""Embedded engine throughput: completion tokens per second of the embedded engine
(batching thread, streaming, stop checks) against plain ``model.generate`` on the same
prompts, batch size and token budget — the ceiling the engine adds its own cost to.

Runs on whatever device the engine picks (CUDA in bf16 when present, else CPU in fp32),
so the same script gives the CPU and the GPU row of docs/benchmarks.md.

Usage: python bench/engine.py [--requests 64] [--concurrency 16] [--max-tokens 48]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# bench/serving.py is named like the `serving` package: keep bench/ off the import path.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "bench"]
sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

from serving.engines.base import GenerationRequest, ModelSource, SamplingParams  # noqa: E402
from serving.engines.embedded import EmbeddedEngine  # noqa: E402
from serving.engines.embedded_config import EmbeddedEngineConfig  # noqa: E402
from trainers.bootstrap.base_model import ensure_base_model  # noqa: E402
from trainers.characters import CHARACTERS_BY_ID, chat_messages, held_out_prompts  # noqa: E402


def _conversations(n: int) -> list[tuple[dict[str, str], ...]]:
    prompts = held_out_prompts()
    return [
        tuple(m.model_dump() for m in chat_messages(CHARACTERS_BY_ID[p.character_id], p.user_message))
        for p in (prompts[i % len(prompts)] for i in range(n))
    ]


async def _engine_run(
    engine: EmbeddedEngine, convs: list, concurrency: int, max_tokens: int
) -> tuple[int, float, list[float]]:
    """(completion tokens, seconds, per-request latencies) for all conversations, at most
    ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(i: int, messages: tuple) -> None:  # type: ignore[type-arg]
        nonlocal tokens
        async with gate:
            start = time.perf_counter()
            request = GenerationRequest(f"r{i}", messages, SamplingParams(max_tokens=max_tokens, temperature=0.0))
            async for delta in engine.generate("base", request):
                if delta.finish_reason is not None:
                    tokens += delta.completion_tokens
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one(i, m) for i, m in enumerate(convs)))
    return tokens, time.perf_counter() - start, latencies


def _plain_run(engine: EmbeddedEngine, convs: list, batch: int, max_tokens: int) -> tuple[int, float]:
    """The same prompts through ``model.generate`` directly, ``batch`` at a time."""
    loaded = engine._models["base"]  # the very model and tokenizer the engine serves
    tok, model = loaded.tokenizer, loaded.model
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(convs), batch):
        texts = [
            tok.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False) for m in convs[i : i + batch]
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        eos = tok.eos_token_id
        for row in new.tolist():  # count up to the first end-of-sequence, as the engine does
            tokens += row.index(eos) if eos in row else len(row)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    engine = EmbeddedEngine(EmbeddedEngineConfig(max_batch_size=args.concurrency))
    await engine.load(ModelSource("base", ensure_base_model()))
    convs = _conversations(args.requests)
    await _engine_run(engine, convs, args.concurrency, args.max_tokens)  # warm-up: kernels, allocator, caches
    _plain_run(engine, convs, args.concurrency, args.max_tokens)
    engine_tps, plain_tps, p50 = [], [], []
    for r in range(args.repeats):  # alternate who goes first: drift hits both sides alike
        for side in ("engine", "plain") if r % 2 == 0 else ("plain", "engine"):
            if side == "engine":
                tokens, seconds, lat = await _engine_run(engine, convs, args.concurrency, args.max_tokens)
                engine_tps.append(tokens / seconds)
                p50.append(statistics.median(lat) * 1000)
            else:
                ptokens, pseconds = await asyncio.to_thread(
                    _plain_run, engine, convs, args.concurrency, args.max_tokens
                )
                plain_tps.append(ptokens / pseconds)
        print(
            f"repeat {r + 1}: engine {engine_tps[-1]:.0f} tok/s (p50 {p50[-1]:.0f} ms), "
            f"plain generate {plain_tps[-1]:.0f} tok/s",
            flush=True,
        )
    dtype = next(engine._models["base"].model.parameters()).dtype
    await engine.close()
    e, p = statistics.median(engine_tps), statistics.median(plain_tps)
    print(
        json.dumps(
            {
                "bench": "engine",
                "device": engine._device,
                "dtype": str(dtype).removeprefix("torch."),
                "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "torch_threads": torch.get_num_threads(),
                "requests": args.requests,
                "concurrency": args.concurrency,
                "max_tokens": args.max_tokens,
                "engine_tokens_per_s": round(e, 1),
                "plain_generate_tokens_per_s": round(p, 1),
                "ratio": round(e / p, 3),
                "engine_p50_request_ms": round(statistics.median(p50), 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
