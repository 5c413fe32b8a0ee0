"""One job, by kind: samples in, a trained folder and its offline evaluation out."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas import EvalReport, PreferenceSample, RewardSample, SftSample, TrainerError, TrainJobRequest
from trainers.bootstrap.corpus import make_item
from trainers.characters import CHARACTERS_BY_ID, held_out_prompts, traffic_opener
from trainers.common.data import (
    Demonstration,
    Labelled,
    Pair,
    Prompt,
    demonstrations_from_samples,
    labelled_from_samples,
    pairs_from_samples,
    prompt_of,
)
from trainers.common.train_config import TrainerConfig
from trainers.common.training import StepHook, TrainResult
from trainers.dpo.dpo_trainer import DpoTrainer
from trainers.evaluate.gate import OfflineGate
from trainers.grpo.grpo_trainer import GrpoTrainer
from trainers.reward.held_out import calibration_error, roc_auc, sigmoid, split_samples
from trainers.reward.reward_config import resolve_mode
from trainers.reward.reward_trainer import RewardModelTrainer
from trainers.reward.scoring import BlendedScorer, RewardModel
from trainers.sft.sft_trainer import SftTrainer
from trainers.worker._inputs import JobInputs
from trainers.worker.worker_config import TrainerWorkerSettings


@dataclass(frozen=True)
class JobOutput:
    result: TrainResult
    settings: TrainerConfig
    held_out: tuple[Labelled, ...] = ()  # labelled replies kept out of training for the model's own check


def _unique_prompts(inputs: JobInputs) -> list[Prompt]:
    """One prompt per distinct context, oldest sample first (so the last are the most recent traffic)."""
    seen: dict[str, Prompt] = {}
    samples: list[SftSample | PreferenceSample | RewardSample] = [*inputs.sft, *inputs.preference, *inputs.reward]
    for s in sorted(samples, key=lambda s: s.ts):
        p = prompt_of(s)
        seen.setdefault("\x00".join(m.content for m in p.context), p)
    return list(seen.values())


def train_job(
    job: TrainJobRequest,
    inputs: JobInputs,
    base_dir: Path,
    out_dir: Path,
    settings: TrainerWorkerSettings,
    reward_model: RewardModel | None,
    on_step: StepHook | None,
) -> JobOutput:
    """Train ``job.kind`` from ``base_dir`` on ``inputs`` into ``out_dir``."""
    scorer = BlendedScorer(reward_model)
    if job.kind == "sft":
        sft = settings.sft.with_overrides(job.config)
        demos: list[Demonstration] = demonstrations_from_samples(inputs.sft)
        # Contexts of other sample types are prompts too: rejection sampling fills in replies.
        demos += [
            Demonstration(p, "") for p in _unique_prompts(JobInputs(preference=inputs.preference, reward=inputs.reward))
        ]
        if not demos:
            raise TrainerError(f"job {job.job_id}: no samples to build SFT data from")
        return JobOutput(SftTrainer(sft).train(base_dir, out_dir, demos, scorer=scorer, on_step=on_step), sft)
    if job.kind == "dpo":
        # Online DPO: best-vs-worst of the serving policy's own replies on every context of
        # the job, ranked by the scorer (checks + engagement model), plus the given pairs.
        dpo = settings.dpo.with_overrides(job.config)
        pairs: list[Pair] = pairs_from_samples(inputs.preference)
        contexts = _unique_prompts(inputs) if dpo.num_candidates >= 2 else []
        if not pairs and not contexts:
            raise TrainerError(f"job {job.job_id}: no preference samples and num_candidates < 2")
        result = DpoTrainer(dpo).train(base_dir, out_dir, pairs, prompts=contexts, scorer=scorer, on_step=on_step)
        return JobOutput(result, dpo)
    if job.kind == "grpo":
        grpo = settings.grpo.with_overrides(job.config)
        prompts = _unique_prompts(inputs)
        if not prompts:
            raise TrainerError(f"job {job.job_id}: no prompts")
        result = GrpoTrainer(grpo).train(base_dir, out_dir, prompts, reward_model=reward_model, on_step=on_step)
        return JobOutput(result, grpo)
    reward = settings.reward.with_overrides(job.config)
    if resolve_mode(reward.mode, bool(inputs.reward)) == "pointwise":
        train, held = split_samples(inputs.reward, settings.reward_held_out_share)
        result = RewardModelTrainer(reward).train(
            base_dir, out_dir, labelled=labelled_from_samples(train), on_step=on_step
        )
        return JobOutput(result, reward, tuple(labelled_from_samples(held)))
    else:
        result = RewardModelTrainer(reward).train(
            base_dir, out_dir, pairs=pairs_from_samples(inputs.preference), on_step=on_step
        )
    return JobOutput(result, reward)


def held_out_pairs(n_per_character: int = 8, seed: int = 99) -> list[Pair]:
    """Pairs on held-out prompts with a checkable preference (compliant and clean vs not)."""
    rng = random.Random(seed)
    out: list[Pair] = []
    for p in held_out_prompts(per_character=n_per_character):
        c = CHARACTERS_BY_ID[p.character_id]
        topic, _ = traffic_opener(rng)
        good = make_item(c, topic, p.user_message, rng, follow=True, violate=False)
        bad = make_item(c, topic, p.user_message, rng, follow=False, violate=rng.random() < 0.5)
        out.append(Pair(Prompt(good.context, c.instructions, c.id), good.reply, bad.reply))
    return out


def gate_reward_model(path: Path, settings: TrainerWorkerSettings, held_out: Sequence[Labelled] = ()) -> EvalReport:
    """A reward model passes if it ranks held-out pairs correctly often enough and, for an
    engagement model, if it ranks and calibrates held-out labelled traffic well enough
    (``held_out``). The policy rates are not applicable and reported as 0; the pairwise
    accuracy is ``reward_score``."""
    rm = RewardModel.load(path)
    pairs = held_out_pairs()
    chosen = rm.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = rm.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=False)) / len(pairs)
    reasons = []
    if accuracy < settings.min_reward_accuracy:
        reasons.append(f"held-out pairwise accuracy {accuracy:.3f} < {settings.min_reward_accuracy:.2f}")
    auc = ece = None
    if held_out:
        labels = [x.label for x in held_out]
        probabilities = [sigmoid(v) for v in rm.score([x.prompt for x in held_out], [x.reply for x in held_out])]
        auc, ece = roc_auc(probabilities, labels), calibration_error(probabilities, labels)
        if auc is None or auc < settings.min_reward_auc:
            reasons.append(f"held-out AUC {auc} below {settings.min_reward_auc:.2f} ({len(held_out)} replies)")
        if ece > settings.max_reward_calibration_error:
            reasons.append(f"held-out calibration error {ece:.3f} above {settings.max_reward_calibration_error:.2f}")
    return EvalReport(
        baseline_version=None,
        prompts=len(pairs),
        instruction_following=0.0,
        violation_rate=0.0,
        reward_score=round(accuracy, 4),
        auc=None if auc is None else round(auc, 4),
        calibration_error=None if ece is None else round(ece, 4),
        passed=not reasons,
        reasons=tuple(reasons),
        flags=("reward model: reward_score is held-out pairwise accuracy",),
    )


def gate_policy(
    candidate: Path,
    baseline: Path | None,
    baseline_version: str | None,
    settings: TrainerWorkerSettings,
    reward_model: RewardModel | None,
    anchor: tuple[str, Path] | None = None,
) -> EvalReport:
    return OfflineGate(settings.gate).evaluate(candidate, baseline, baseline_version, reward_model, anchor)
