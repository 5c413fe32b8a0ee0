"""Trainer wrappers vs plain trl: the same data, model and settings; steps per second of
``train()`` for our SFT and DPO layers against SFTTrainer / DPOTrainer called directly.

With ``--lora``: our layers with full fine-tuning against LoRA adapters (the adapter the
demo trains for vLLM: rank 16 on every linear layer), the same data and steps, to
measure what LoRA saves a generation's training on this model.

Usage: python bench/trainers.py [--repeats 4] [--examples 512] [--lora]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from trainers.bootstrap import synthetic_corpus, synthetic_pairs
from trainers.bootstrap.base_model import ensure_base_model
from trainers.characters import CHARACTERS_BY_ID
from trainers.common import Demonstration, LoraAdapterConfig, Pair, Prompt
from trainers.common.training import run_trainer
from trainers.dpo import DpoTrainerConfig
from trainers.dpo.dpo_trainer import DpoTrainer
from trainers.sft import SftTrainerConfig
from trainers.sft.sft_trainer import SftTrainer

_CUDA = torch.cuda.is_available()


def _prompt(cid: str, context: tuple) -> Prompt:  # type: ignore[type-arg]
    return Prompt(context, CHARACTERS_BY_ID[cid].instructions, cid)


def _timed(train: object, trainer: object) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process). CPU time is the
    steadier number on a machine shared with other jobs."""
    trainer.remove_callback(PrinterCallback)  # type: ignore[attr-defined]  # no log lines on stdout, on either side
    gc.collect()  # the previous run's garbage is collected before the clock starts, not during it
    wall, cpu = time.perf_counter(), time.process_time()
    train()  # type: ignore[operator]
    steps = trainer.state.global_step  # type: ignore[attr-defined]
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def _ours(wrapper: SftTrainer | DpoTrainer, base: Path, data: list, work: Path) -> tuple[float, float]:  # type: ignore[type-arg]
    """Our layer: its configured trl trainer plus its progress/loss hook (run_trainer),
    timed like plain trl's train() (model loading and saving excluded on both sides)."""
    trainer = wrapper.build(AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base), data, work)
    return _timed(lambda: run_trainer(trainer), trainer)


def _plain_sft(base: Path, demos: list[Demonstration], s: SftTrainerConfig, work: Path) -> tuple[float, float]:
    rows = [{"messages": d.prompt.with_reply(d.reply)} for d in demos]
    # Exactly the arguments a careful user would pass to trl on this machine.
    config = SFTConfig(
        output_dir=str(work),
        num_train_epochs=s.epochs,
        per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        warmup_steps=s.warmup_ratio,
        lr_scheduler_type="cosine",
        seed=s.seed,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        max_length=s.max_length,
        assistant_only_loss=True,
        packing=False,
        use_cpu=not _CUDA,
        bf16=_CUDA and torch.cuda.is_bf16_supported(),
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base),
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(base),
    )
    return _timed(trainer.train, trainer)


def _plain_dpo(base: Path, pairs: list[Pair], s: DpoTrainerConfig, work: Path) -> tuple[float, float]:
    rows = [
        {
            "prompt": p.prompt.messages,
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    config = DPOConfig(
        output_dir=str(work),
        num_train_epochs=s.epochs,
        per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        warmup_steps=s.warmup_ratio,
        lr_scheduler_type="cosine",
        seed=s.seed,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        max_length=s.max_length,
        beta=s.beta,
        use_cpu=not _CUDA,
        bf16=_CUDA and torch.cuda.is_bf16_supported(),
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(base),
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(base),
    )
    return _timed(trainer.train, trainer)


def _progress(r: int, results: dict[str, list[tuple[float, float]]]) -> None:
    print(
        f"repeat {r + 1}: "
        + ", ".join(f"{k} {v[-1][0]:.2f} steps/s ({v[-1][1]:.2f} per CPU-s)" for k, v in results.items()),
        flush=True,
    )


def _medians(results: dict[str, list[tuple[float, float]]]) -> tuple[dict[str, float], dict[str, float]]:
    """Median steps per wall second and per CPU second of each side."""
    wall = {k: statistics.median(x[0] for x in v) for k, v in results.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in results.items()}
    return wall, cpu


def _demo_lora() -> LoraAdapterConfig:
    """The adapter the demo's trainers train when generations are served by vLLM."""
    from flywheel.demo._platform import trainer_settings
    from flywheel.demo.config import DemoConfig

    return trainer_settings(DemoConfig(engine="vllm"), run_id="bench", work_dir=Path(tempfile.gettempdir())).sft.lora


def _lora_against_full(base: Path, demos: list[Demonstration], pairs: list[Pair], repeats: int) -> dict[str, object]:
    """Our SFT and DPO layers, full weights against LoRA, interleaved like the main bench.
    LoRA DPO needs no separate reference model (the disabled adapter is the reference)."""
    full_sft, full_dpo = SftTrainerConfig(epochs=1.0, num_candidates=0), DpoTrainerConfig(epochs=1.0)
    lora = _demo_lora()
    sides = {
        "sft_full": (SftTrainer, full_sft, demos),
        "sft_lora": (SftTrainer, full_sft.model_copy(update={"lora": lora}), demos),
        "dpo_full": (DpoTrainer, full_dpo, pairs),
        "dpo_lora": (DpoTrainer, full_dpo.model_copy(update={"lora": lora}), pairs),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _ours(SftTrainer(full_sft), base, demos[:32], work / "warmup")
        for r in range(repeats):
            for kind in ("sft", "dpo"):
                order = [("full", "lora"), ("lora", "full")][r % 2]
                for how in order:
                    cls, config, data = sides[f"{kind}_{how}"]
                    results[f"{kind}_{how}"].append(_ours(cls(config), base, data, work / f"{kind}-{how}-{r}"))
            _progress(r, results)
    wall, cpu = _medians(results)
    return {
        "lora": lora.model_dump(mode="json"),
        **{f"{k}_steps_per_s": round(v, 3) for k, v in wall.items()},
        **{f"{k}_steps_per_cpu_s": round(v, 3) for k, v in cpu.items()},
        "sft_lora_over_full": round(wall["sft_lora"] / wall["sft_full"], 3),
        "dpo_lora_over_full": round(wall["dpo_lora"] / wall["dpo_full"], 3),
        "sft_lora_over_full_cpu": round(cpu["sft_lora"] / cpu["sft_full"], 3),
        "dpo_lora_over_full_cpu": round(cpu["dpo_lora"] / cpu["dpo_full"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="even: each side goes first equally often")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--lora", action="store_true", help="full fine-tuning against LoRA instead of ours against trl")
    args = parser.parse_args()
    base = ensure_base_model()
    demos = [
        Demonstration(_prompt(i.character_id, i.context), i.reply) for i in synthetic_corpus(args.examples, seed=1)
    ]
    pairs = [
        Pair(_prompt(p.character_id, p.context), p.chosen, p.rejected) for p in synthetic_pairs(args.examples, seed=2)
    ]
    if args.lora:
        head = {
            "bench": "trainers-lora",
            "device": "cuda" if _CUDA else "cpu",
            "torch_threads": torch.get_num_threads(),
        }
        extra = {"examples": args.examples, "repeats": args.repeats}
        print(json.dumps({**head, **extra, **_lora_against_full(base, demos, pairs, args.repeats)}))
        return
    sft_s = SftTrainerConfig(epochs=1.0, num_candidates=0)
    dpo_s = DpoTrainerConfig(epochs=1.0)
    results: dict[str, list[tuple[float, float]]] = {"sft_ours": [], "sft_trl": [], "dpo_ours": [], "dpo_trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _plain_sft(base, demos[:32], sft_s, work / "warmup")  # first-call costs (threads, allocator) hit neither side
        for r in range(args.repeats):  # interleaved, alternating who goes first: load drift hits both sides alike
            order = [("trl", "ours"), ("ours", "trl")][r % 2]
            for who in order:
                if who == "trl":
                    results["sft_trl"].append(_plain_sft(base, demos, sft_s, work / f"p{r}"))
                    results["dpo_trl"].append(_plain_dpo(base, pairs, dpo_s, work / f"q{r}"))
                else:
                    results["sft_ours"].append(_ours(SftTrainer(sft_s), base, demos, work / f"s{r}"))
                    results["dpo_ours"].append(_ours(DpoTrainer(dpo_s), base, pairs, work / f"d{r}"))
            _progress(r, results)
    wall, cpu = _medians(results)
    out = {
        "bench": "trainers",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "examples": args.examples,
        "repeats": args.repeats,
        **{f"{k}_steps_per_s": round(v, 3) for k, v in wall.items()},
        **{f"{k}_steps_per_cpu_s": round(v, 3) for k, v in cpu.items()},
        "sft_ratio": round(wall["sft_ours"] / wall["sft_trl"], 3),
        "dpo_ratio": round(wall["dpo_ours"] / wall["dpo_trl"], 3),
        "sft_cpu_ratio": round(cpu["sft_ours"] / cpu["sft_trl"], 3),
        "dpo_cpu_ratio": round(cpu["dpo_ours"] / cpu["dpo_trl"], 3),
        "target_ratio": 0.95,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
