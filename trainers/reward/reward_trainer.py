"""Reward models: pairwise Bradley–Terry over trl's RewardTrainer, pointwise
P(continued) over transformers' Trainer with a one-logit sigmoid head."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from trl import RewardConfig, RewardTrainer

from schemas import TrainerError
from trainers.common.data import Labelled, Pair
from trainers.common.loading import adapter_config_of, load_policy
from trainers.common.training import StepHook, TrainResult, common_args, peft_config, run_trainer, save_model
from trainers.reward.reward_config import RewardTrainerConfig, resolve_mode


def load_reward_backbone(model_dir: Path, tokenizer: PreTrainedTokenizerBase, pointwise: bool) -> PreTrainedModel:
    """A sequence classifier with one output, initialised from a causal LM (or a reward model).

    A policy that is a LoRA adapter (a generation of a LoRA lineage) is merged into its base
    first: ``from_pretrained`` on the adapter folder would attach the adapter to the base and
    save only the adapter again, which is no reward model."""
    kwargs = {"problem_type": "multi_label_classification"} if pointwise else {}
    adapter = adapter_config_of(model_dir)
    if adapter is not None and adapter.get("task_type") == "CAUSAL_LM":
        with tempfile.TemporaryDirectory(prefix="flywheel-rm-start-") as start:
            merged, _ = load_policy(model_dir, "cpu")
            merged.save_pretrained(start, safe_serialization=True)
            del merged
            model = AutoModelForSequenceClassification.from_pretrained(start, num_labels=1, **kwargs)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


class RewardModelTrainer:
    """Train a reward model from ``base_dir`` (a policy or an earlier reward model)."""

    def __init__(self, settings: RewardTrainerConfig | None = None) -> None:
        self.settings = settings or RewardTrainerConfig()

    def train(
        self,
        base_dir: Path,
        out_dir: Path,
        *,
        pairs: Sequence[Pair] = (),
        labelled: Sequence[Labelled] = (),
        on_step: StepHook | None = None,
    ) -> TrainResult:
        s = self.settings
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        pointwise = resolve_mode(s.mode, bool(labelled)) == "pointwise"
        if pointwise and not labelled:
            raise TrainerError("pointwise reward training needs labelled replies (samples.reward)")
        if not pointwise and not pairs:
            raise TrainerError("pairwise reward training needs preference pairs (samples.preference)")
        if s.lora.enabled and not s.lora.merge and adapter_config_of(base_dir) is not None:
            raise TrainerError(
                f"a LoRA reward model needs a full start, and {base_dir} is a LoRA adapter (its merged weights "
                "exist in memory only): set the reward trainer's lora.merge=true or lora.enabled=false"
            )
        model = load_reward_backbone(base_dir, tokenizer, pointwise)
        with tempfile.TemporaryDirectory(prefix="flywheel-rm-") as work:
            if pointwise:
                trainer = self._pointwise_trainer(model, tokenizer, labelled, Path(work))
            else:
                trainer = self._pairwise_trainer(model, tokenizer, pairs, Path(work))
            steps, seconds, losses = run_trainer(trainer, on_step)
            kind = save_model(trainer.model, tokenizer, out_dir, merge=s.lora.merge)
        return TrainResult(
            out_dir, kind, steps, seconds, losses, {"examples": float(len(labelled) if pointwise else len(pairs))}
        )

    def _pairwise_trainer(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair], work: Path
    ) -> RewardTrainer:
        s = self.settings
        rows = [{"chosen": p.prompt.with_reply(p.chosen), "rejected": p.prompt.with_reply(p.rejected)} for p in pairs]
        config = RewardConfig(
            **common_args(s, work), max_length=s.max_length, center_rewards_coefficient=s.center_rewards_coefficient
        )
        return RewardTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config(s, "SEQ_CLS"),
        )

    def _pointwise_trainer(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, labelled: Sequence[Labelled], work: Path
    ) -> Trainer:
        s = self.settings
        lora = peft_config(s, "SEQ_CLS")  # None unless LoRA is enabled
        trained: torch.nn.Module = model
        if lora is not None:
            from peft import get_peft_model

            trained = get_peft_model(model, lora)
        rows = []
        for ex in labelled:
            text = tokenizer.apply_chat_template(ex.prompt.with_reply(ex.reply), tokenize=False)
            ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=s.max_length)["input_ids"]
            rows.append({"input_ids": ids, "labels": [float(ex.label)]})
        # BCE on one logit: sigmoid(score) estimates P(continued | context, reply).
        args = TrainingArguments(**common_args(s, work), remove_unused_columns=False)
        return Trainer(
            model=trained,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
