"""Helpers of the serving tests: a uvicorn server in a thread, a tiny local Llama
checkpoint (no model hub), manifests with real sha256 digests."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from schemas import CheckpointManifest, DeploymentState, EvalReport, FileDigest
from tests._wait import wait_until, wait_until_async

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL.

    The socket is bound to port 0 here and handed to uvicorn, so the port is the one the
    kernel gave this server: no other process can take it between choosing and binding.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:

        def started() -> bool:
            assert thread.is_alive() or server.started, "uvicorn exited during start-up"
            return server.started

        wait_until(started, 30, every_s=0.01, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@asynccontextmanager
async def serve_app_here(app: Any) -> AsyncIterator[str]:
    """``serve_app`` on the running event loop: for engines whose clients belong to one
    loop (the vLLM engine's HTTP pool), so the test and the server share it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:

        def started() -> bool:
            assert not task.done(), "uvicorn exited during start-up"
            return server.started

        await wait_until_async(started, 30, every_s=0.01, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@contextmanager
def port_nobody_listens_on() -> Iterator[int]:
    """A loopback port bound (so no one else can take it) but never listening: a
    connection to it is refused for as long as the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def state(
    model: str = "policy",
    baseline: str | None = "v1",
    candidate: str | None = None,
    share_bp: int = 0,
    status: str = "idle",
    salt: str = "salt",
) -> DeploymentState:
    return DeploymentState(
        model=model,
        baseline_version=baseline,
        candidate_version=candidate,
        share_bp=share_bp,
        step_index=0 if candidate else -1,
        status=status,
        experiment_salt=salt,  # type: ignore[arg-type]
        updated_ts=datetime.now(UTC),
    )


def build_tiny_llama(path: Path, seed: int = 0, max_positions: int = 256, endless: bool = False) -> Path:
    """A ~100k-parameter Llama with a BPE tokenizer trained here and a chat template.

    ``max_positions`` is its context. ``endless``: greedy decoding never ends a reply
    early (EOS's output row is zero, so its logit is 0 while the largest of the ~300 others
    is positive), so a reply runs to max_tokens — for tests that need a long generation.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        f"hello there friend number {i}, how are you today? I like {w} and {v}."
        for i, (w, v) in enumerate(
            zip(
                ["tea", "cats", "rain", "music", "books", "code"] * 20,
                ["sun", "dogs", "snow", "art", "maps", "math"] * 20,
                strict=False,
            )
        )
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    if endless:
        with torch.no_grad():
            model.lm_head.weight[fast.eos_token_id].zero_()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path


def manifest_for(
    path: Path | None,
    version: str,
    model: str = "policy",
    passed: bool = True,
    parent: str | None = None,
    status: str = "published",
    age_s: float = 0.0,
) -> CheckpointManifest:
    files = []
    if path is not None:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            files.append(
                FileDigest(
                    path=str(f.relative_to(path)),
                    sha256=hashlib.sha256(f.read_bytes()).hexdigest(),
                    size=f.stat().st_size,
                )
            )
    report = EvalReport(
        baseline_version=parent, prompts=10, instruction_following=0.8, violation_rate=0.05, passed=passed
    )
    return CheckpointManifest(
        model=model,
        version=version,
        parent=parent,
        kind="full",
        files=tuple(files),
        eval=report,
        status=status,
        created_ts=datetime.now(UTC) - timedelta(seconds=age_s),  # type: ignore[arg-type]
        uri=str(path) if path is not None else f"/nonexistent/{version}",
    )


def window_aggregate(
    rng: Any,
    arm: str,
    version: str,
    start: datetime,
    users: int,
    window_s: int = 60,
    p_continue: float = 0.4,
    p_violation: float = 0.1,
    p_if: float = 0.8,
    partition: int | None = 0,
    slow: float = 0.05,
) -> Any:
    """One synthetic per-arm window partial, as the signals processor would emit it."""
    from schemas import LATENCY_BUCKETS_MS, ArmWindowAggregate

    turns = rng.poisson(2.0, users) + 1
    responses = int(turns.sum())
    buckets = [0] * len(LATENCY_BUCKETS_MS)
    n_slow = int(rng.binomial(responses, slow))
    buckets[2] = responses - n_slow
    buckets[5] = n_slow
    return ArmWindowAggregate(
        arm=arm,
        model_version=version,
        window_start=start,
        window_s=window_s,
        partition=partition,  # type: ignore[arg-type]
        sessions=users,
        users_assigned=users,
        users_engaged=users,
        users_active=users,
        user_turns=int(turns.sum()),
        user_turns_sq=int((turns**2).sum()),
        responses=responses,
        continued=int(rng.binomial(responses, p_continue)),
        instruction_following=int(rng.binomial(responses, p_if)),
        violations=int(rng.binomial(responses, p_violation)),
        latency_ms_sum=float(responses * 80),
        latency_buckets=tuple(buckets),
    )
