"""Plumbing every trainer shares: base settings, device arguments, LoRA, progress and
loss capture, saving as safetensors. Each trainer stays a thin layer over trl."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel
from transformers import (
    PreTrainedTokenizerBase,
    PrinterCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from trainers.common.train_config import TrainerConfig


def device_args() -> dict[str, Any]:
    """The same code on CPU and CUDA: bf16 only where the device supports it."""
    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def common_args(settings: TrainerConfig, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments every trl config gets from our settings."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": settings.epochs,
        "per_device_train_batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "warmup_steps": settings.warmup_ratio,  # a float < 1 is a share of the steps
        "lr_scheduler_type": "cosine",
        "seed": settings.seed,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "save_strategy": "no",
        "report_to": [],
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        # A progress bar only when someone is watching a terminal.
        "disable_tqdm": not sys.stderr.isatty(),
        **device_args(),
    }


def peft_config(settings: TrainerConfig, task_type: str = "CAUSAL_LM") -> LoraConfig | None:
    if not settings.lora.enabled:
        return None
    lora = settings.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=task_type,
    )


@dataclass
class TrainResult:
    """What a training run produced and how it went.

    Attributes:
        output_dir: the saved model (safetensors) — a full model or a LoRA adapter.
        kind: "full" or "lora" (what ``output_dir`` holds).
        steps: optimiser steps taken.
        train_s: wall time of ``train()``.
        losses: training loss per logged step.
        metrics: trainer-specific numbers (examples used, rewards, margins…).
    """

    output_dir: Path
    kind: Literal["full", "lora"]
    steps: int
    train_s: float
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.train_s if self.train_s > 0 else 0.0

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


StepHook = Callable[[int, int, float | None], None]
"""Called after each optimiser step with (step, total steps, latest loss): progress,
metrics and lease renewal hang off this."""


class _Progress(TrainerCallback):
    def __init__(self, on_step: StepHook | None) -> None:
        self.on_step = on_step
        self.losses: list[float] = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps, self.losses[-1] if self.losses else None)


def run_trainer(trainer: Any, on_step: StepHook | None = None) -> tuple[int, float, list[float]]:
    """Run ``trainer.train()`` with our progress hook; return (steps, seconds, losses)."""
    progress = _Progress(on_step)
    trainer.add_callback(progress)
    trainer.remove_callback(PrinterCallback)  # losses go to our hook and metrics, not stdout
    started = time.perf_counter()
    trainer.train()
    return int(trainer.state.global_step), time.perf_counter() - started, progress.losses


def save_model(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    merge: bool,
    lora_base: Path | None = None,
) -> Literal["full", "lora"]:
    """Save weights as safetensors (never pickle) with the tokenizer; return the kind.

    An adapter is saved alone (trl's frozen ``ref`` copy, which DPO and GRPO add when they
    continue an adapter, is not), and with ``lora_base`` its ``adapter_config.json`` names
    that folder as ``base_model_name_or_path``: every generation applies to the root base."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kind: Literal["full", "lora"] = "full"
    if isinstance(model, PeftModel) and merge:
        model = model.merge_and_unload()  # merges the active adapter; a "ref" copy is dropped
    if isinstance(model, PeftModel):
        kind = "lora"
        name = model.active_adapter
        if lora_base is not None:
            model.peft_config[name].base_model_name_or_path = str(lora_base.absolute())
        model.save_pretrained(str(out_dir), safe_serialization=True, selected_adapters=[name])
    else:
        model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return kind
