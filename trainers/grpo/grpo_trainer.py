"""GRPO over trl's GRPOTrainer, rewarded by the verifiable checks and the reward model."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl import GRPOConfig, GRPOTrainer

from schemas import ChatMessage, TrainerError, instruction_adapter
from trainers.common.candidates import Scorer, rank_candidates
from trainers.common.data import Prompt
from trainers.common.generation import SamplingSettings
from trainers.common.training import StepHook, TrainResult, common_args, peft_config, run_trainer, save_model
from trainers.grpo.grpo_config import GrpoSettings
from trainers.reward.scoring import RewardModel, check_score


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return str(completion[-1]["content"]) if completion else ""
    return str(completion)


def _prompt(messages: list[dict[str, str]], instructions_json: str) -> Prompt:
    return Prompt(
        tuple(ChatMessage.model_validate(m) for m in messages),
        tuple(instruction_adapter.validate_python(i) for i in json.loads(instructions_json)),
    )


def instruction_reward(prompts: list[Any], completions: list[Any], instructions: list[str], **_: Any) -> list[float]:
    """Verifiable reward: share of the character's instructions passed, −1 for a policy violation."""
    return [check_score(_prompt(p, i), _text(c)) for p, c, i in zip(prompts, completions, instructions, strict=True)]


def reward_model_reward(model: RewardModel) -> Any:
    def reward_model_score(
        prompts: list[Any], completions: list[Any], instructions: list[str], **_: Any
    ) -> list[float]:
        raw = model.score(
            [_prompt(p, i) for p, i in zip(prompts, instructions, strict=True)], [_text(c) for c in completions]
        )
        return [math.tanh(r) for r in raw]

    return reward_model_score


def select_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    scorer: Scorer,
    settings: GrpoSettings,
) -> list[Prompt]:
    """Prompts where the policy does worst or least consistently: lowest mean score first,
    ties broken by the widest spread."""
    if settings.select_candidates == 0 or settings.select_fraction >= 1:
        return list(prompts)
    sampling = SamplingSettings(
        max_new_tokens=settings.max_completion_length, temperature=settings.temperature, seed=settings.seed + 2
    )
    ranked = rank_candidates(model, tokenizer, prompts, scorer, settings.select_candidates, sampling)

    def key(r: Any) -> tuple[float, float]:
        s = list(r.scores) or [0.0]
        return (statistics.fmean(s), -(statistics.pstdev(s) if len(s) > 1 else 0.0))

    keep = max(1, round(len(prompts) * settings.select_fraction))
    return [r.prompt for r in sorted(ranked, key=key)[:keep]]


class GrpoTrainer:
    """Group-relative policy optimisation of a policy."""

    def __init__(self, settings: GrpoSettings | None = None) -> None:
        self.settings = settings or GrpoSettings()

    def train(
        self,
        policy_dir: Path,
        out_dir: Path,
        prompts: Sequence[Prompt],
        *,
        reward_model: RewardModel | None = None,
        scorer: Scorer | None = None,
        on_step: StepHook | None = None,
    ) -> TrainResult:
        if not prompts:
            raise TrainerError("GRPO needs prompts")
        tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        model = AutoModelForCausalLM.from_pretrained(policy_dir)
        chosen = (
            select_prompts(model, tokenizer, prompts, scorer, self.settings) if scorer is not None else list(prompts)
        )
        with tempfile.TemporaryDirectory(prefix="flywheel-grpo-") as work:
            trainer = self.build(model, tokenizer, chosen, Path(work), reward_model)
            steps, seconds, losses = run_trainer(trainer, on_step)
            rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
            kind = save_model(trainer.model, tokenizer, out_dir, merge=self.settings.lora.merge)
        metrics = {"prompts": float(len(prompts)), "selected_prompts": float(len(chosen))}
        if rewards:
            metrics |= {"reward_first": float(rewards[0]), "reward_last": float(rewards[-1])}
        return TrainResult(out_dir, kind, steps, seconds, losses, metrics)

    def build(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Sequence[Prompt],
        work: Path,
        reward_model: RewardModel | None = None,
    ) -> GRPOTrainer:
        s = self.settings
        rows = [
            {"prompt": p.messages, "instructions": json.dumps([i.model_dump() for i in p.instructions])}
            for p in prompts
        ]
        funcs: list[Any] = [instruction_reward]
        weights = [1.0]
        if reward_model is not None and s.rm_weight > 0:
            funcs.append(reward_model_reward(reward_model))
            weights.append(s.rm_weight)
        args = common_args(s, work)
        args.pop("num_train_epochs")
        config = GRPOConfig(
            **args,
            max_steps=s.max_steps,
            num_generations=s.num_generations,
            max_completion_length=s.max_completion_length,
            temperature=s.temperature,
            beta=s.beta,
            reward_weights=weights,
            generation_batch_size=s.batch_size,
        )
        return GRPOTrainer(
            model=model,
            args=config,
            train_dataset=datasets.Dataset.from_list(rows),
            reward_funcs=funcs,
            processing_class=tokenizer,
            peft_config=peft_config(s),
        )
