"""Rejection-sampling SFT over trl's SFTTrainer."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
from peft import PeftConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from schemas import TrainerError
from trainers.common.candidates import Scorer, rank_candidates
from trainers.common.data import Demonstration
from trainers.common.generation import SamplingConfig
from trainers.common.loading import load_trainable_policy
from trainers.common.training import StepHook, TrainResult, common_args, run_trainer, save_model
from trainers.sft.sft_config import SftTrainerConfig


def rejection_sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    demos: Sequence[Demonstration],
    scorer: Scorer,
    settings: SftTrainerConfig,
) -> tuple[list[Demonstration], dict[str, float]]:
    """Best reply per context among the policy's samples (and the curated reply);
    contexts whose best reply scores below ``min_score`` are dropped."""
    sampling = SamplingConfig(
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed
    )
    extra = [[d.reply] for d in demos] if settings.include_curated else None
    ranked = rank_candidates(
        model, tokenizer, [d.prompt for d in demos], scorer, settings.num_candidates, sampling, extra
    )
    kept = [Demonstration(r.prompt, r.best[0]) for r in ranked if r.replies and r.best[1] >= settings.min_score]
    stats = {
        "contexts": float(len(demos)),
        "kept": float(len(kept)),
        "mean_best_score": sum(r.best[1] for r in ranked if r.replies) / max(1, len(ranked)),
    }
    return kept, stats


class SftTrainer:
    """Fine-tune a policy on (rejection-sampled) demonstrations."""

    def __init__(self, settings: SftTrainerConfig | None = None) -> None:
        self.settings = settings or SftTrainerConfig()

    def train(
        self,
        policy_dir: Path,
        out_dir: Path,
        demos: Sequence[Demonstration],
        *,
        scorer: Scorer | None = None,
        on_step: StepHook | None = None,
    ) -> TrainResult:
        """Rejection-sample with ``scorer`` (skipped when None: train on ``demos`` as given), then SFT.
        ``policy_dir`` is a full model or a LoRA adapter (see ``load_trainable_policy``)."""
        policy = load_trainable_policy(policy_dir, self.settings)
        model, tokenizer = policy.model, policy.tokenizer
        stats: dict[str, float] = {"contexts": float(len(demos)), "kept": float(len(demos))}
        if scorer is not None:
            demos, stats = rejection_sample(model, tokenizer, demos, scorer, self.settings)
        if not demos:
            raise TrainerError("no demonstration survived rejection sampling; nothing to train on")
        with tempfile.TemporaryDirectory(prefix="flywheel-sft-") as work:
            trainer = self.build(model, tokenizer, demos, Path(work), peft_config=policy.peft_config)
            steps, seconds, losses = run_trainer(trainer, on_step)
            kind = save_model(trainer.model, tokenizer, out_dir, self.settings.lora.merge, policy.lora_base)
        return TrainResult(out_dir, kind, steps, seconds, losses, stats)

    def build(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        demos: Sequence[Demonstration],
        work: Path,
        *,
        peft_config: PeftConfig | None = None,
    ) -> SFTTrainer:
        """The configured trl SFTTrainer (exposed for benchmarks). ``peft_config``: the LoRA
        config trl wraps ``model`` in (``TrainablePolicy.peft_config``); None trains ``model``
        as it is (every weight, or the adapter a PeftModel carries)."""
        s = self.settings
        rows = [{"messages": d.prompt.with_reply(d.reply)} for d in demos]
        config = SFTConfig(
            **common_args(s, work), max_length=s.max_length, assistant_only_loss=s.assistant_only_loss, packing=False
        )
        return SFTTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
