"""GRPO over trl's GRPOTrainer, rewarded by the verifiable checks and the engagement model."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
from peft import PeftConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import GRPOConfig, GRPOTrainer

from schemas import ChatMessage, TrainerError, instruction_adapter
from trainers.common.candidates import Scorer, rank_candidates
from trainers.common.data import Prompt
from trainers.common.generation import SamplingConfig
from trainers.common.loading import load_trainable_policy
from trainers.common.training import StepHook, TrainResult, common_args, run_trainer, save_model
from trainers.grpo.grpo_config import GrpoTrainerConfig
from trainers.grpo.selection import choose_prompts, reward_spread, zero_advantage_groups
from trainers.reward.scoring import BlendedScorer, check_score

log = logging.getLogger(__name__)


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


def reward_model_reward(model: Scorer) -> Any:
    """trl reward function: tanh of the reward model's logit (the blend the scorer uses)."""

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
    settings: GrpoTrainerConfig,
) -> tuple[list[Prompt], int]:
    """Sample ``select_candidates`` replies per prompt from the current policy, score them
    with the training reward, and keep the prompts whose rewards differ most; returns them
    and the number skipped for a spread at or below ``min_reward_spread``."""
    if settings.select_candidates == 0:
        return list(prompts), 0
    sampling = SamplingConfig(
        max_new_tokens=settings.max_completion_length, temperature=settings.temperature, seed=settings.seed + 2
    )
    ranked = rank_candidates(model, tokenizer, prompts, scorer, settings.select_candidates, sampling)
    keep, skipped = choose_prompts(
        [reward_spread(r.scores) for r in ranked], settings.select_fraction, settings.min_reward_spread
    )
    return [ranked[i].prompt for i in keep], skipped


class GrpoTrainer:
    """Group-relative policy optimisation of a policy."""

    def __init__(self, settings: GrpoTrainerConfig | None = None) -> None:
        self.settings = settings or GrpoTrainerConfig()

    def train(
        self,
        policy_dir: Path,
        out_dir: Path,
        prompts: Sequence[Prompt],
        *,
        reward_model: Scorer | None = None,
        on_step: StepHook | None = None,
    ) -> TrainResult:
        """GRPO from ``policy_dir`` on the newest ``max_prompts`` of ``prompts`` (oldest
        first), rewarded by the checks and ``reward_model`` (the engagement model; None =
        the checks alone)."""
        s = self.settings
        if not prompts:
            raise TrainerError("GRPO needs prompts")
        if reward_model is None or s.rm_weight == 0:
            log.info("GRPO: no engagement reward model to use; rewarding the verifiable checks alone")
            reward_model = None
        recent = list(prompts)[-s.max_prompts :]
        scorer = BlendedScorer(reward_model, check_weight=1.0, rm_weight=s.rm_weight)
        with tempfile.TemporaryDirectory(prefix="flywheel-grpo-") as work:
            # With a KL penalty trl loads the reference from the start's path (merged_start_dir).
            policy = load_trainable_policy(policy_dir, s, merged_start_dir=Path(work) / "start")
            model, tokenizer = policy.model, policy.tokenizer
            chosen, skipped = select_prompts(model, tokenizer, recent, scorer, s)
            if not chosen:
                raise TrainerError(
                    f"GRPO: the replies of none of {len(recent)} prompts differ in reward by more than "
                    f"min_reward_spread ({s.min_reward_spread}); every group would have zero advantage"
                )
            trainer = self.build(model, tokenizer, chosen, Path(work), reward_model, peft_config=policy.peft_config)
            steps, seconds, losses = run_trainer(trainer, on_step)
            history = list(trainer.state.log_history)
            kind = save_model(trainer.model, tokenizer, out_dir, s.lora.merge, policy.lora_base)
        rewards = [float(h["reward"]) for h in history if "reward" in h]
        kls = [float(h["kl"]) for h in history if "kl" in h]
        metrics = {
            "prompts": float(len(prompts)),
            "considered_prompts": float(len(recent)),
            "selected_prompts": float(len(chosen)),
            "skipped_groups": float(skipped),
            "zero_advantage_groups": float(zero_advantage_groups(history, s.batch_size // s.num_generations)),
            "reward_model": 1.0 if reward_model is not None else 0.0,
        }
        if rewards:
            metrics |= {"reward_first": rewards[0], "reward_last": rewards[-1]}
        if kls:
            metrics["kl_last"] = kls[-1]
        return TrainResult(out_dir, kind, steps, seconds, losses, metrics)

    def build(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Sequence[Prompt],
        work: Path,
        reward_model: Scorer | None = None,
        *,
        peft_config: PeftConfig | None = None,
    ) -> GRPOTrainer:
        """The configured trl GRPOTrainer: the checks (weight 1) and, if given, the reward
        model (``rm_weight``) as reward functions; KL strength ``beta``. ``peft_config``: the
        LoRA config trl wraps ``model`` in (``TrainablePolicy.peft_config``); None trains
        ``model`` as it is."""
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
            peft_config=peft_config,
        )
