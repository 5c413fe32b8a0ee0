"""DPO over trl's DPOTrainer."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
from peft import PeftConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer

from schemas import TrainerError
from trainers.common.candidates import Scorer, rank_candidates
from trainers.common.data import Pair, Prompt
from trainers.common.generation import SamplingConfig
from trainers.common.loading import load_trainable_policy
from trainers.common.training import StepHook, TrainResult, common_args, run_trainer, save_model
from trainers.dpo.dpo_config import DpoTrainerConfig


def best_vs_worst_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    scorer: Scorer,
    settings: DpoTrainerConfig,
) -> list[Pair]:
    """(best, worst) of the policy's own candidates, where the scores differ enough."""
    sampling = SamplingConfig(
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed + 1
    )
    ranked = rank_candidates(model, tokenizer, prompts, scorer, settings.num_candidates, sampling)
    return [
        Pair(r.prompt, r.best[0], r.worst[0])
        for r in ranked
        if len(r.replies) >= 2 and r.best[1] - r.worst[1] >= settings.min_gap and r.best[0] != r.worst[0]
    ]


class DpoTrainer:
    """Direct preference optimisation of a policy."""

    def __init__(self, settings: DpoTrainerConfig | None = None) -> None:
        self.settings = settings or DpoTrainerConfig()

    def train(
        self,
        policy_dir: Path,
        out_dir: Path,
        pairs: Sequence[Pair],
        *,
        prompts: Sequence[Prompt] | None = None,
        scorer: Scorer | None = None,
        on_step: StepHook | None = None,
    ) -> TrainResult:
        """DPO on ``pairs`` plus, with a ``scorer`` and ``num_candidates`` ≥ 2, best-vs-worst
        pairs of the starting policy's own replies to ``prompts`` (default: the pairs' prompts).
        ``policy_dir`` is a full model or a LoRA adapter (see ``load_trainable_policy``)."""
        with tempfile.TemporaryDirectory(prefix="flywheel-dpo-") as work:
            policy = load_trainable_policy(policy_dir, self.settings, merged_start_dir=Path(work) / "start")
            model, tokenizer = policy.model, policy.tokenizer
            own: list[Pair] = []
            if scorer is not None and self.settings.num_candidates >= 2:
                contexts = (
                    list(prompts) if prompts is not None else list({id(p.prompt): p.prompt for p in pairs}.values())
                )
                own = best_vs_worst_pairs(model, tokenizer, contexts, scorer, self.settings)
            all_pairs = [*pairs, *own]
            if not all_pairs:
                raise TrainerError("no preference pairs to train on")
            trainer = self.build(model, tokenizer, all_pairs, Path(work), peft_config=policy.peft_config)
            steps, seconds, losses = run_trainer(trainer, on_step)
            kind = save_model(trainer.model, tokenizer, out_dir, self.settings.lora.merge, policy.lora_base)
        metrics = {"pairs": float(len(all_pairs)), "given_pairs": float(len(pairs)), "own_pairs": float(len(own))}
        return TrainResult(out_dir, kind, steps, seconds, losses, metrics)

    def build(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pairs: Sequence[Pair],
        work: Path,
        *,
        peft_config: PeftConfig | None = None,
    ) -> DPOTrainer:
        """The configured trl DPOTrainer (exposed for benchmarks). ``peft_config``: the LoRA
        config trl wraps ``model`` in (``TrainablePolicy.peft_config``); None trains ``model``
        as it is. With a fresh adapter the disabled adapter (the start) is the reference; a
        PeftModel's adapter is copied frozen as ``ref``; a full model is reloaded from its
        ``name_or_path``."""
        s = self.settings
        rows = [
            {
                "prompt": p.prompt.messages,
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in pairs
        ]
        config = DPOConfig(**common_args(s, work), max_length=s.max_length, beta=s.beta)
        return DPOTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
