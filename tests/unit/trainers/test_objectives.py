"""Each trainer moves its own objective on the tiny local model (CPU)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest
from transformers import set_seed

from trainers.bootstrap import synthetic_corpus, synthetic_pairs
from trainers.bootstrap.base_model import ensure_base_model
from trainers.characters import CHARACTERS_BY_ID
from trainers.common import Demonstration, Labelled, LoraAdapterConfig, Pair, Prompt
from trainers.common.generation import SamplingConfig, generate_replies, reply_logprobs
from trainers.common.loading import load_policy
from trainers.dpo import DpoTrainerConfig
from trainers.dpo.dpo_trainer import DpoTrainer
from trainers.evaluate import GateConfig, OfflineGate
from trainers.grpo import GrpoTrainerConfig
from trainers.grpo.grpo_trainer import GrpoTrainer
from trainers.reward import RewardTrainerConfig
from trainers.reward.reward_trainer import RewardModelTrainer
from trainers.reward.scoring import BlendedScorer, RewardModel, check_score
from trainers.sft import SftTrainerConfig
from trainers.sft.sft_trainer import SftTrainer
from trainers.worker._jobs import held_out_pairs

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]

# Two-sided 95 % critical values: normal, and Student's t with 9 and 15 degrees of freedom.
Z_95 = 1.959964
T9_95 = 2.262157
T15_95 = 2.131450


@pytest.fixture(scope="module")
def base() -> Path:
    return ensure_base_model()


def _prompt(cid: str, context: tuple) -> Prompt:  # type: ignore[type-arg]
    return Prompt(context, CHARACTERS_BY_ID[cid].instructions, cid)


def _paired_gain(before: Sequence[float], after: Sequence[float], critical: float = Z_95) -> tuple[float, float]:
    """The mean of the per-prompt differences after − before, and the lower end of its 95 %
    interval (``critical`` × the standard error over the prompts)."""
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    mean = statistics.fmean(diffs)
    return mean, mean - critical * statistics.stdev(diffs) / math.sqrt(len(diffs))


def _train_pairs(n: int, seed: int) -> list[Pair]:
    return [Pair(_prompt(p.character_id, p.context), p.chosen, p.rejected) for p in synthetic_pairs(n, seed=seed)]


def test_rejection_sampled_sft_raises_held_out_instruction_following(base: Path, tmp_path: Path) -> None:
    gate = OfflineGate(GateConfig(prompts_per_character=30))  # 180 held-out prompts, 2 replies each
    before = gate.stats_of(base)
    items = synthetic_corpus(112, seed=11)  # traffic-like, mixed quality: rejection sampling must filter
    demos = [Demonstration(_prompt(i.character_id, i.context), i.reply) for i in items]
    result = SftTrainer(SftTrainerConfig(num_candidates=1, epochs=2.0)).train(
        base, tmp_path / "sft", demos, scorer=BlendedScorer()
    )
    after = gate.stats_of(result.output_dir)
    assert result.kind == "full" and result.metrics["kept"] < len(demos)
    print(
        f"SFT held-out IF {before.instruction_following:.3f} -> {after.instruction_following:.3f}, "
        f"violations {before.violation_rate:.3f} -> {after.violation_rate:.3f}"
    )
    gain, low = _paired_gain(before.following_per_prompt, after.following_per_prompt)
    n = len(before.following_per_prompt)
    print(f"paired IF gain {gain:+.3f}, 95 % interval from {low:+.3f} (n={n} prompts)")
    assert low > 0, f"instruction following gain {gain:+.3f}: its 95 % interval reaches zero ({low:+.3f}, n={n})"
    assert after.violation_rate <= before.violation_rate


def test_pairwise_reward_model_ranks_held_out_pairs(base: Path, tmp_path: Path) -> None:
    RewardModelTrainer(RewardTrainerConfig(epochs=1.0)).train(base, tmp_path / "rm", pairs=_train_pairs(192, seed=3))
    rm = RewardModel.load(tmp_path / "rm")
    pairs = held_out_pairs()
    chosen = rm.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = rm.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=False)) / len(pairs)
    print(f"pairwise reward model held-out accuracy {accuracy:.3f}")
    assert accuracy >= 0.7, accuracy  # chance is 0.5


def test_pointwise_reward_model_separates_continued_from_not(base: Path, tmp_path: Path) -> None:
    def labelled(n: int, seed: int) -> list[Labelled]:
        # Simulated users continue after compliant, clean replies.
        return [
            Labelled(_prompt(i.character_id, i.context), i.reply, float(i.follows and not i.violates))
            for i in synthetic_corpus(n, seed=seed, follow_rate=0.5, violation_rate=0.3)
        ]

    RewardModelTrainer(RewardTrainerConfig(mode="pointwise", epochs=2.0)).train(
        base, tmp_path / "prm", labelled=labelled(160, 21)
    )
    rm = RewardModel.load(tmp_path / "prm")
    test = labelled(96, 22)
    scores = rm.score([t.prompt for t in test], [t.reply for t in test])
    pos = [s for s, t in zip(scores, test, strict=False) if t.label == 1.0]
    neg = [s for s, t in zip(scores, test, strict=False) if t.label == 0.0]
    auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    print(f"pointwise reward model held-out AUC {auc:.3f}")
    assert auc >= 0.7, auc


def _margin(path: Path, pairs: list[Pair]) -> float:
    model, tok = load_policy(path, "cpu")
    convs = [p.prompt.messages for p in pairs]
    chosen = reply_logprobs(model, tok, convs, [p.chosen for p in pairs])
    rejected = reply_logprobs(model, tok, convs, [p.rejected for p in pairs])
    return statistics.fmean(c - r for c, r in zip(chosen, rejected, strict=False))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dpo_raises_chosen_over_rejected_margin(base: Path, tmp_path: Path, lora: bool) -> None:
    held_out = held_out_pairs(n_per_character=4)
    before = _margin(base, held_out)
    settings = DpoTrainerConfig(
        epochs=1.0, lora=LoraAdapterConfig(enabled=lora, r=16, alpha=32), learning_rate=5e-3 if lora else 5e-4
    )
    result = DpoTrainer(settings).train(base, tmp_path / "dpo", _train_pairs(96, seed=5))
    assert result.kind == ("lora" if lora else "full")
    names = {p.name for p in result.output_dir.iterdir()}
    assert ("adapter_model.safetensors" in names) == lora and not any(n.endswith((".bin", ".pt")) for n in names)
    after = _margin(result.output_dir, held_out)
    print(f"DPO ({'lora' if lora else 'full'}) held-out chosen-rejected log-prob margin {before:.2f} -> {after:.2f}")
    assert after >= before + 0.5, (before, after)


def test_grpo_raises_the_verifiable_reward(base: Path, tmp_path: Path) -> None:
    prompts = [p.prompt for p in _train_pairs(16, seed=8)]

    def mean_rewards(path: Path) -> list[float]:
        """Per prompt, the mean verifiable reward of 16 sampled replies."""
        model, tok = load_policy(path, "cpu")
        replies = generate_replies(
            model, tok, [p.messages for p in prompts], SamplingConfig(seed=3), num_return_sequences=16
        )
        return [statistics.fmean(check_score(p, r) for r in rs) for p, rs in zip(prompts, replies, strict=True)]

    before_per_prompt = mean_rewards(base)
    settings = GrpoTrainerConfig(
        max_steps=8, batch_size=16, num_generations=4, learning_rate=3e-3, select_candidates=0, max_completion_length=48
    )
    result = GrpoTrainer(settings).train(base, tmp_path / "grpo", prompts)
    after_per_prompt = mean_rewards(result.output_dir)
    before, after = statistics.fmean(before_per_prompt), statistics.fmean(after_per_prompt)
    gain, low = _paired_gain(before_per_prompt, after_per_prompt, critical=T15_95)
    print(f"GRPO mean verifiable reward {before:.3f} -> {after:.3f}")
    print(f"paired reward gain {gain:+.3f}, 95 % interval from {low:+.3f} (n={len(prompts)} prompts x 16 replies)")
    assert low > 0, (
        f"reward gain {gain:+.3f} ({before:.3f} -> {after:.3f}): its 95 % interval reaches zero ({low:+.3f})"
    )


def test_grpo_with_an_engagement_model_and_the_checks_raises_their_reward(base: Path, tmp_path: Path) -> None:
    """GRPO rewarded as in production (checks + tanh of a small engagement model), with
    the default KL penalty: the blended reward of the policy's replies rises, the policy
    moves away from its reference (KL > 0), and prompts without reward spread are counted."""
    set_seed(0)  # the reward head is initialised from the global generator before trl seeds it
    labelled = [
        Labelled(_prompt(i.character_id, i.context), i.reply, float(i.follows and not i.violates))
        for i in synthetic_corpus(64, seed=31, follow_rate=0.5, violation_rate=0.3)
    ]
    RewardModelTrainer(RewardTrainerConfig(mode="pointwise", epochs=1.0)).train(
        base, tmp_path / "rm", labelled=labelled
    )
    rm = RewardModel.load(tmp_path / "rm")
    prompts = [p.prompt for p in _train_pairs(10, seed=8)]
    settings = GrpoTrainerConfig(
        max_steps=5,
        batch_size=16,
        num_generations=4,
        learning_rate=3e-3,
        max_completion_length=32,
        select_candidates=4,
        select_fraction=1.0,
        min_reward_spread=0.15,
    )
    assert settings.beta > 0  # the default keeps a KL penalty to the reference
    scorer = BlendedScorer(rm, rm_weight=settings.rm_weight)  # the reward GRPO trains on

    def mean_rewards(path: Path) -> list[float]:
        """Per prompt, the mean blended reward of 16 sampled replies."""
        model, tok = load_policy(path, "cpu")
        sampling = SamplingConfig(seed=3, max_new_tokens=32)
        replies = generate_replies(model, tok, [p.messages for p in prompts], sampling, num_return_sequences=16)
        return [statistics.fmean(scorer.score([p] * len(rs), rs)) for p, rs in zip(prompts, replies, strict=True)]

    before_per_prompt = mean_rewards(base)
    result = GrpoTrainer(settings).train(base, tmp_path / "grpo", prompts, reward_model=rm)
    after_per_prompt = mean_rewards(result.output_dir)
    before, after = statistics.fmean(before_per_prompt), statistics.fmean(after_per_prompt)
    gain, low = _paired_gain(before_per_prompt, after_per_prompt, critical=T9_95)
    m = result.metrics
    print(
        f"GRPO (engagement model + checks, beta {settings.beta}) mean reward {before:.3f} -> {after:.3f}; "
        f"selected {m['selected_prompts']:.0f}, skipped {m['skipped_groups']:.0f} of {m['considered_prompts']:.0f}, "
        f"zero-advantage groups in training {m['zero_advantage_groups']:.0f}, KL {m.get('kl_last', 0):.4f}"
    )
    assert m["reward_model"] == 1.0 and result.steps == 5
    assert m["skipped_groups"] >= 1 and m["skipped_groups"] + m["selected_prompts"] == m["considered_prompts"] == 10
    assert "zero_advantage_groups" in m and m["kl_last"] > 0
    print(f"paired reward gain {gain:+.3f}, 95 % interval from {low:+.3f} (n={len(prompts)} prompts x 16 replies)")
    assert low > 0, (
        f"reward gain {gain:+.3f} ({before:.3f} -> {after:.3f}): its 95 % interval reaches zero ({low:+.3f})"
    )
