"""Engines: the embedded transformers engine on a tiny Llama built here (checkpoint
checks, chat template, batched streaming, cancellation), and the vLLM engine against the
in-repo vLLM-compatible test server (vLLM itself cannot run on these machines)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving._errors import EngineUnavailableError, ModelLoadError
from serving.engines import (
    EmbeddedEngine,
    EmbeddedEngineConfig,
    GenerationRequest,
    ModelSource,
    SamplingParams,
    VllmEngine,
    VllmEngineConfig,
    complete,
)
from tests._serving import build_tiny_llama, manifest_for
from tests._wait import wait_until_async
from tests.kits.vllm_compat_server import VllmCompatServer

pytestmark = [pytest.mark.model, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("ckpt") / "v1")


def _req(i: int, max_tokens: int = 12, temperature: float = 0.0) -> GenerationRequest:
    return GenerationRequest(
        f"r{i}",
        ({"role": "user", "content": f"hello there friend number {i}"},),
        SamplingParams(max_tokens=max_tokens, temperature=temperature),
    )


def test_embedded_engine_batches_and_streams(tiny_llama: Path) -> None:
    engine = EmbeddedEngine(EmbeddedEngineConfig(device="cpu", max_batch_size=8, batch_wait_ms=20))

    async def run() -> None:
        await engine.load(ModelSource("v1", tiny_llama, manifest=manifest_for(tiny_llama, "v1")))
        assert engine.versions() == ["v1"]
        batched = await asyncio.gather(*(complete(engine, "v1", _req(i)) for i in range(6)))
        alone = [await complete(engine, "v1", _req(i)) for i in range(6)]
        for b, a in zip(batched, alone, strict=False):
            # greedy decoding gives the same reply batched (left-padded) or alone
            assert b.text == a.text and b.completion_tokens == a.completion_tokens
            assert b.finish_reason in ("stop", "length") and 0 < b.completion_tokens <= 12 and b.prompt_tokens > 0
        sampled = await complete(engine, "v1", _req(1, max_tokens=5, temperature=1.0))
        assert sampled.completion_tokens <= 5
        # cancelling a stream stops its row
        stream = engine.generate("v1", _req(9, max_tokens=200))
        first = await stream.__anext__()
        await stream.aclose()
        assert first.finish_reason is None or first.text == ""
        with pytest.raises(EngineUnavailableError):
            await complete(engine, "v2", _req(0))
        await engine.unload("v1")
        assert engine.versions() == []
        await engine.close()

    asyncio.run(run())


def test_two_versions_share_one_batch_and_each_row_gets_its_own_models_reply(tmp_path: Path) -> None:
    """A canary's arms are decoded together, each row by its own version's model: both
    versions' rows run in one batch at once, and a mixed batch gives every row the reply
    its version gives it alone (greedy)."""
    v1 = build_tiny_llama(tmp_path / "v1", seed=0, endless=True)
    v2 = build_tiny_llama(tmp_path / "v2", seed=1, endless=True)
    engine = EmbeddedEngine(EmbeddedEngineConfig(device="cpu", max_batch_size=8, batch_wait_ms=50))

    async def run() -> None:
        for version, path in (("v1", v1), ("v2", v2)):
            await engine.load(ModelSource(version, path, manifest=manifest_for(path, version)))
        alone = {v: await complete(engine, v, _req(3, max_tokens=16)) for v in ("v1", "v2")}
        assert alone["v1"].text != alone["v2"].text  # two different models

        long = [
            asyncio.ensure_future(complete(engine, v, _req(i, max_tokens=3000)))
            for i, v in enumerate(("v1", "v1", "v2", "v2"))
        ]
        await wait_until_async(lambda: engine.stats().running == 4, 30, every_s=0.005, what="one batch of both")
        for task in long:
            task.cancel()
        await asyncio.gather(*long, return_exceptions=True)

        mixed = await asyncio.gather(*(complete(engine, v, _req(3, max_tokens=16)) for v in ("v1", "v2", "v1")))
        assert [m.text for m in mixed] == [alone["v1"].text, alone["v2"].text, alone["v1"].text]
        await engine.close()

    asyncio.run(run())


def test_embedded_engine_refuses_pickles_and_bad_digests(tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    engine = EmbeddedEngine(EmbeddedEngineConfig(device="cpu"))
    bad = tmp_path / "pickled"
    shutil.copytree(tiny_llama, bad)
    (bad / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError, match="pickle"):
        asyncio.run(engine.load(ModelSource("v2", bad)))
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_llama, tampered)
    manifest = manifest_for(tampered, "v3")
    weights = tampered / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        asyncio.run(engine.load(ModelSource("v3", tampered, manifest=manifest)))
    assert engine.versions() == []


def test_vllm_engine_against_the_compat_server(tmp_path: Path) -> None:
    adapter_dir = tmp_path / "adapters" / "v17"
    adapter_dir.mkdir(parents=True)
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"{}")  # the stand-in never reads it
    with VllmCompatServer(served=("policy@v16",), token_delay_s=0.001) as server:
        engine = VllmEngine(
            VllmEngineConfig(urls=(server.url,), model="policy", poll_interval_s=0.05, load_timeout_s=2)
        )

        async def run() -> None:
            # full checkpoint served by a replica started with --served-model-name policy@v16
            await engine.load(ModelSource("v16", None, kind="full"))
            reply = await complete(engine, "v16", _req(0, max_tokens=4))
            assert reply.text == "policy@v16:w0 policy@v16:w1 policy@v16:w2 policy@v16:w3"
            assert reply.completion_tokens == 4 and reply.finish_reason == "length"
            # LoRA version under an immutable name
            await engine.load(ModelSource("v17", adapter_dir, kind="lora"))
            assert "policy@v17" in server.state.adapters
            assert (await complete(engine, "v17", _req(1, max_tokens=3))).text.startswith("policy@v17:w0")
            warmups = [r for r in server.state.requests if r["model"] == "policy@v17"]
            assert warmups and warmups[0]["max_tokens"] == engine.config.warmup_max_tokens
            # a replica restart loses runtime adapters: reconcile re-applies them
            server.state.adapters.clear()
            assert await engine.reconcile() == [(server.url, "v17")]
            assert "policy@v17" in server.state.adapters
            # disconnecting mid-stream aborts the request upstream
            stream = engine.generate("v17", _req(2, max_tokens=500))
            await stream.__anext__()
            await stream.aclose()
            await wait_until_async(lambda: server.state.aborted, 30, what="the upstream request to be aborted")
            assert len(server.state.aborted) == 1
            # an error reported inside a 200 stream is raised, not relayed as text
            server.state.fail_mid_stream = 1
            with pytest.raises(Exception, match="mid-stream"):
                await complete(engine, "v17", _req(3, max_tokens=10))
            await engine.unload("v17")
            assert "policy@v17" not in server.state.adapters and engine.versions() == ["v16"]
            with pytest.raises(ModelLoadError, match="no replica serves"):
                await engine.load(ModelSource("v18", None, kind="full"))
            with pytest.raises(ModelLoadError, match="not a directory"):
                await engine.load(ModelSource("v19", tmp_path / "missing", kind="lora"))
            server.state.refuse_loads = True
            with pytest.raises(ModelLoadError, match="refused"):
                await engine.load(ModelSource("v20", adapter_dir, kind="lora"))
            await engine.close()

        asyncio.run(run())


def test_a_replica_that_misses_one_check_stays_routed_and_one_that_is_gone_leaves_at_once() -> None:
    with VllmCompatServer(served=("policy@v1",)) as server:
        engine = VllmEngine(VllmEngineConfig(urls=(server.url,), model="policy", unanswered_checks=2))

        async def run() -> None:
            await engine.load(ModelSource("v1", None, kind="full"))
            server.state.fail_model_lists = 1  # busy once: still served
            await engine.reconcile()
            assert (await complete(engine, "v1", _req(0, max_tokens=2))).completion_tokens == 2
            server.state.fail_model_lists = 2  # twice in a row: out of routing...
            await engine.reconcile()
            await engine.reconcile()
            with pytest.raises(EngineUnavailableError):
                await complete(engine, "v1", _req(1, max_tokens=2))
            await engine.reconcile()  # ...until it answers again
            assert (await complete(engine, "v1", _req(2, max_tokens=2))).completion_tokens == 2
            server.stop()  # nothing listens: out at the first check
            await engine.reconcile()
            with pytest.raises(EngineUnavailableError):
                await complete(engine, "v1", _req(3, max_tokens=2))
            await engine.close()

        asyncio.run(run())


def test_hot_swap_with_the_embedded_engine_verifies_before_serving(tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    from schemas import Topics
    from serving import CanaryConfig, CanaryController, HotSwapConfig, HotSwapController, MemoryRoutingStore
    from serving.hotswap import ModelSlots
    from streams import EmbeddedBus

    good = tmp_path / "v2"
    shutil.copytree(tiny_llama, good)
    tampered = tmp_path / "v3"
    shutil.copytree(tiny_llama, tampered)
    manifest_v3 = manifest_for(tampered, "v3", parent="v1", age_s=1)
    (tampered / "model.safetensors").write_bytes((tampered / "model.safetensors").read_bytes()[:-1] + b"\1")
    topics = Topics("hs-embedded")
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    engine = EmbeddedEngine(EmbeddedEngineConfig(device="cpu"))
    store = MemoryRoutingStore()
    canary = CanaryController(CanaryConfig(), "policy", store, bus, topics)
    hs = HotSwapController(HotSwapConfig(health_max_tokens=2), "policy", ModelSlots(engine), canary, None, topics)

    async def run() -> None:
        hs.offer(manifest_for(tiny_llama, "v1", age_s=10))
        assert [e.kind for e in await hs.poll_once()] == ["bootstrapped"]
        hs.offer(manifest_for(good, "v2", parent="v1", age_s=5))
        assert [e.kind for e in await hs.poll_once()] == ["loaded"]
        canary.operator_action("rollback", "test", "make room")
        hs.offer(manifest_v3)
        events = await hs.poll_once()
        assert [e.kind for e in events if e.kind != "unloaded"] == ["rejected"] and "sha256" in events[0].detail
        await engine.close()

    asyncio.run(run())
    assert store.get("policy").candidate_version is None and store.get("policy").baseline_version == "v1"
    assert [d.candidate_version for d in canary.decisions if d.action == "reject"] == ["v3"]
