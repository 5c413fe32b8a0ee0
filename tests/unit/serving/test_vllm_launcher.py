"""The launcher's failure paths, which a real vLLM start cannot be made to take on demand:
a launch script that fails, a port range with no free port, and a hot-swap that treats a
failed launch as any failed load. The launch that works is tested against real vLLM in
tests/integration/vllm_server/test_blue_green.py; the base replica here is the in-repo
stand-in, because the fault is in the launch."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from schemas import Topics
from serving import CanaryConfig, CanaryController, HotSwapConfig, HotSwapController, MemoryRoutingStore, VllmEngine
from serving._errors import ModelLoadError
from serving.engines import ModelSource
from serving.engines.vllm_config import VllmEngineConfig, VllmLauncherConfig
from serving.engines.vllm_launcher import VllmLauncher, port_open
from serving.hotswap import ModelSlots
from streams import EmbeddedBus
from tests._serving import manifest_for
from tests.kits.vllm_compat_server import VllmCompatServer


def _failing_script(tmp_path: Path) -> tuple[Path, Path]:
    """A launch script that records its calls and fails every start, as vllm.sh does when vLLM exits early."""
    calls = tmp_path / "calls"
    script = tmp_path / "vllm.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$1 $FLYWHEEL_LOCAL_VLLM_PORT $FLYWHEEL_LOCAL_VLLM_SERVED_NAME" >> {calls}\n'
        '[ "$1" = stop ] && exit 0\n'
        'echo "[local] vllm exited during start-up; last log lines: boom" >&2\n'
        "exit 1\n"
    )
    return script, calls


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failed_launch_is_a_load_error_and_stops_what_it_started(tmp_path: Path) -> None:
    script, calls = _failing_script(tmp_path)
    port = _free_port()
    launcher = VllmLauncher(VllmLauncherConfig(enabled=True, script=script, first_port=port, last_port=port))
    with pytest.raises(ModelLoadError, match=r"did not become ready.*boom") as failed:
        asyncio.run(launcher.launch("f1", "policy@f1", tmp_path))
    assert failed.value.version == "f1"
    assert calls.read_text().splitlines() == [f"start {port} policy@f1", f"stop {port} policy@f1"]
    # the port is free again for the next launch
    with pytest.raises(ModelLoadError, match="did not become ready"):
        asyncio.run(launcher.launch("f2", "policy@f2", tmp_path))


def test_no_free_port_is_a_load_error_naming_the_range(tmp_path: Path) -> None:
    script, calls = _failing_script(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        assert port_open(port)
        launcher = VllmLauncher(VllmLauncherConfig(enabled=True, script=script, first_port=port, last_port=port))
        with pytest.raises(ModelLoadError, match=f"no free port in {port}-{port}"):
            asyncio.run(launcher.launch("f1", "policy@f1", tmp_path))
    assert not calls.exists(), "a port something else holds is never the launcher's"


def test_the_hot_swap_rejects_a_full_checkpoint_whose_launch_fails(tmp_path: Path, topics: Topics) -> None:
    script, calls = _failing_script(tmp_path)
    port = _free_port()
    f1 = tmp_path / "f1"
    f1.mkdir()
    (f1 / "model.safetensors").write_bytes(b"{}")  # the launch fails before anything reads it
    with VllmCompatServer(served=("policy@base",), token_delay_s=0.0) as server:
        launcher = VllmLauncherConfig(enabled=True, script=script, first_port=port, last_port=port)
        engine = VllmEngine(VllmEngineConfig(urls=(server.url,), launcher=launcher))
        slots = ModelSlots(engine)
        store = MemoryRoutingStore()
        bus = EmbeddedBus()
        bus.create_topics(topics.specs())
        canary = CanaryController(CanaryConfig(), "policy", store, bus, topics)
        hs = HotSwapController(HotSwapConfig(), "policy", slots, canary, None, topics)

        async def run() -> None:
            await slots.load(ModelSource("base", None))
            canary.bootstrap("base")
            hs.offer(manifest_for(f1, "f1", parent="base"))
            events = await hs.poll_once()
            assert [(e.kind, e.version) for e in events if e.kind != "reconciled"] == [("rejected", "f1")]
            assert "did not become ready" in events[0].detail
            await engine.close()

        asyncio.run(run())
    state = store.get("policy")
    assert state is not None and state.baseline_version == "base" and state.candidate_version is None
    assert engine.versions() == ["base"] and slots.ready() == ["base"]
    assert calls.read_text().splitlines() == [f"start {port} policy@f1", f"stop {port} policy@f1"]


def test_a_tampered_full_checkpoint_is_refused_before_anything_is_launched(tmp_path: Path) -> None:
    script, calls = _failing_script(tmp_path)
    f1 = tmp_path / "f1"
    f1.mkdir()
    (f1 / "model.safetensors").write_bytes(b"{}")
    manifest = manifest_for(f1, "f1", parent="base")
    (f1 / "model.safetensors").write_bytes(b"{ }")  # changed after publishing
    launcher = VllmLauncherConfig(enabled=True, script=script, first_port=18190, last_port=18199)
    engine = VllmEngine(VllmEngineConfig(urls=("http://127.0.0.1:9",), launcher=launcher))
    with pytest.raises(ModelLoadError, match="sha256"):
        asyncio.run(engine.load(ModelSource.from_manifest(manifest)))
    assert not calls.exists(), "no vLLM process is started for files that do not match their manifest"
