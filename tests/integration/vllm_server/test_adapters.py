"""The vLLM engine client against a real vLLM server: a LoRA generation is verified,
loaded under an immutable name, served (streamed) and unloaded; the gateway counts prompt
tokens with the served tokenizer, so a prompt over the context never reaches vLLM."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import openai
import pytest

from serving import GatewayConfig, MemoryRoutingStore, ModelLoadError, VllmEngine, create_app
from serving.engines import ModelSource, complete
from serving.engines.vllm_config import VllmEngineConfig
from serving.gateway import Gateway
from serving.hotswap import ModelSlots
from tests._serving import serve_app_here, state
from tests._vllm import LocalVllm, greedy, listed, lora_manifest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


def _engine(vllm: LocalVllm) -> VllmEngine:
    return VllmEngine(VllmEngineConfig(urls=(vllm.url,), tokenizer_dir=vllm.model_dir))


def test_an_adapter_is_verified_loaded_streamed_and_unloaded(
    vllm: LocalVllm, adapters: dict[str, Path], tmp_path: Path
) -> None:
    engine = _engine(vllm)

    async def run() -> None:
        await engine.load(ModelSource("base", None, kind="full"))
        path = adapters["a1"]
        await engine.load(ModelSource.from_manifest(lora_manifest(path, "a1")))
        assert "policy@a1" in listed(vllm.url)

        deltas = [d async for d in engine.generate("a1", greedy(1))]
        assert len(deltas) > 2, "the reply streams in pieces"
        last = deltas[-1]
        assert last.finish_reason in ("stop", "length") and last.completion_tokens > 0
        # the gateway's own count (served tokenizer, chat template) is vLLM's
        assert engine.count_prompt_tokens("a1", greedy(1).messages) == last.prompt_tokens
        window = engine.context_window("a1")
        assert window is not None and window.tokens == 384
        # the adapter applies: greedy replies differ from the base's
        base_reply = await complete(engine, "base", greedy(2))
        adapter_reply = await complete(engine, "a1", greedy(3))
        assert adapter_reply.text != base_reply.text

        # a tampered checkpoint is refused before vLLM reads a byte of it
        tampered = tmp_path / "tampered"
        shutil.copytree(path, tampered)
        manifest = lora_manifest(tampered, "a1-bad")
        weights = tampered / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
        with pytest.raises(ModelLoadError, match="sha256"):
            await engine.load(ModelSource.from_manifest(manifest))
        assert "policy@a1-bad" not in listed(vllm.url)

        await engine.unload("a1")
        assert "policy@a1" not in listed(vllm.url)
        assert engine.versions() == ["base"]
        await engine.close()

    asyncio.run(run())


def test_the_gateway_refuses_a_prompt_over_the_context_before_vllm(vllm: LocalVllm) -> None:
    engine = _engine(vllm)
    slots = ModelSlots(engine)
    store = MemoryRoutingStore()
    store.put(state(baseline="base"))
    gateway = Gateway(GatewayConfig(), store, slots, None)
    words = " ".join(f"word{i}" for i in range(400))  # several tokens each: far over 384
    prompt = " ".join(f"w{i}" for i in range(120))

    async def run() -> None:
        await engine.load(ModelSource("base", None, kind="full"))
        slots.mark_ready("base")
        async with serve_app_here(create_app(gateway)) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(model="policy", messages=[{"role": "user", "content": words}])
            assert refused.value.code == "context_length_exceeded"
            # A prompt that fits, asking for more than the room left: the gateway lowers
            # max_tokens (vLLM would answer 400), so the reply ends where the context does.
            tokens = engine.count_prompt_tokens("base", ({"role": "user", "content": prompt},))
            assert tokens is not None and tokens < 384
            reply = await client.chat.completions.create(
                model="policy", messages=[{"role": "user", "content": prompt}], max_tokens=1000, temperature=1.0
            )
            assert reply.usage is not None and reply.usage.prompt_tokens == tokens
            assert reply.usage.prompt_tokens + reply.usage.completion_tokens <= 384
            await client.close()
        await engine.close()

    asyncio.run(run())
