"""The real local vLLM server of the tests and benchmarks (deploy/local/vllm.sh), and LoRA
adapters over the base model it serves, published with real sha256 digests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from schemas import CheckpointManifest
from serving.engines import GenerationRequest, SamplingParams
from tests._serving import manifest_for

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy/local/vllm.sh"
PORT = int(os.environ.get("FLYWHEEL_LOCAL_VLLM_PORT", "18000"))
URL = f"http://127.0.0.1:{PORT}"
RUN = Path(os.environ.get("FLYWHEEL_LOCAL_RUN", "/tmp/flywheel-local"))


def run_dir(port: int) -> Path:
    """Where deploy/local/vllm.sh keeps the pid file and log of the server on ``port``."""
    return RUN / f"vllm-{port}"


def stop_server(port: int) -> None:
    """Stop the script's server on ``port`` (a test's clean-up after a failure)."""
    env = {**os.environ, "FLYWHEEL_LOCAL_VLLM_PORT": str(port)}
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120, check=False)


class LocalVllm:
    """Start, stop and restart the one vLLM server the tests share (the script reuses a
    server already listening on the port; ``stop`` at the end only stops one it started)."""

    def __init__(self, model_dir: Path, cpu_bind: str | None = None) -> None:
        """``cpu_bind``: the cores the whole server runs on (the script's default: the
        engine's threads on the first core, its other processes anywhere)."""
        self.model_dir = model_dir
        self.url = URL
        self.started_here = False
        self._env = {**os.environ, **({"FLYWHEEL_LOCAL_VLLM_CPU_BIND": cpu_bind} if cpu_bind else {})}

    def _run(self, *args: str, timeout_s: float = 600) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s, check=False, env=self._env
        )
        if done.returncode != 0:
            raise RuntimeError(f"deploy/local/vllm.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stderr

    def running(self) -> bool:
        return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, check=False).returncode == 0

    def start(self) -> None:
        if not self.running():
            self.started_here = True
        self._run("start", str(self.model_dir))

    def stop(self) -> None:
        self._run("stop")

    def restart(self) -> None:
        """What a crashed-and-restarted replica looks like: same base, no runtime adapters."""
        self.stop()
        self._run("start", str(self.model_dir))


def make_adapter(base_dir: Path, out_dir: Path, seed: int, rank: int = 8) -> Path:
    """A LoRA adapter (q/k/v/o) over ``base_dir`` with random, non-zero weights, saved as a
    trainer saves one (safetensors and the tokenizer): its replies differ from the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)  # peft starts B at zero (a no-op adapter); this one changes replies
    peft.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


def lora_manifest(path: Path, version: str, parent: str | None = "base") -> CheckpointManifest:
    return manifest_for(path, version, parent=parent).model_copy(update={"kind": "lora"})


def greedy(i: int, text: str = "Tell me about the weather today.", max_tokens: int = 24) -> GenerationRequest:
    """A greedy request: the same prompt gives the same reply from the same weights."""
    return GenerationRequest(
        f"t{i}", ({"role": "user", "content": text},), SamplingParams(max_tokens=max_tokens, temperature=0.0)
    )


def listed(url: str) -> set[str]:
    """The model names a vLLM server lists in /v1/models (base and loaded adapters)."""
    return {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
