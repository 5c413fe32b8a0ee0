"""A LoRA lineage vLLM can serve: generation 2 continues generation 1's adapter over the
same root base (never LoRA-on-LoRA), DPO's reference is the starting policy, and LoRA off
from an adapter trains a full-weight generation. Tiny model, a handful of steps (CPU)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from schemas import TrainerError
from trainers.bootstrap import synthetic_corpus, synthetic_pairs
from trainers.bootstrap.base_model import ensure_base_model
from trainers.characters import CHARACTERS_BY_ID
from trainers.common import Demonstration, LoraAdapterConfig, Pair, Prompt
from trainers.common.loading import AdapterMismatchError, load_policy, load_trainable_policy
from trainers.common.training import TrainResult, run_trainer, save_model
from trainers.dpo import DpoTrainerConfig
from trainers.dpo.dpo_trainer import DpoTrainer
from trainers.registry import CheckpointRegistry
from trainers.reward import RewardTrainerConfig
from trainers.reward.reward_trainer import RewardModelTrainer
from trainers.reward.scoring import RewardModel
from trainers.sft import SftTrainerConfig
from trainers.sft.sft_trainer import SftTrainer
from trainers.worker import TrainerWorkerSettings
from trainers.worker.worker import register_base_model

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

LORA = LoraAdapterConfig(enabled=True, r=4, alpha=8)
SFT = SftTrainerConfig(lora=LORA, num_candidates=1, batch_size=4, epochs=1.0, learning_rate=1e-2, warmup_ratio=0.0)
LN2 = math.log(2)


def _prompt(cid: str, context: tuple) -> Prompt:  # type: ignore[type-arg]
    return Prompt(context, CHARACTERS_BY_ID[cid].instructions, cid)


@pytest.fixture(scope="module")
def base() -> Path:
    return ensure_base_model()


@pytest.fixture(scope="module")
def demos() -> list[Demonstration]:
    items = [i for i in synthetic_corpus(48, seed=21) if i.follows and not i.violates][:12]
    return [Demonstration(_prompt(i.character_id, i.context), i.reply) for i in items]


@pytest.fixture(scope="module")
def gen1(base: Path, demos: list[Demonstration], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Generation 1: a fresh adapter over the base, through the trainer's public path."""
    return SftTrainer(SFT).train(base, tmp_path_factory.mktemp("gen1") / "out", demos)


@dataclass
class Trained:
    out: Path
    model: Any  # the PeftModel as training left it
    tokenizer: Any
    losses: list[float]


@pytest.fixture(scope="module")
def gen2(gen1: TrainResult, demos: list[Demonstration], tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Generation 2 from generation 1's adapter folder, step by step as SftTrainer.train does,
    keeping the trained model to compare against what was saved."""
    policy = load_trainable_policy(gen1.output_dir, SFT)
    assert policy.continues_adapter and policy.peft_config is None and policy.start == "lora"
    work = tmp_path_factory.mktemp("gen2")
    trainer = SftTrainer(SFT).build(policy.model, policy.tokenizer, demos, work / "trl", peft_config=None)
    _, _, losses = run_trainer(trainer)
    kind = save_model(trainer.model, policy.tokenizer, work / "out", merge=False, lora_base=policy.lora_base)
    assert kind == "lora"
    return Trained(work / "out", trainer.model, policy.tokenizer, losses)


def _adapter_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "adapter_config.json").read_text())


def _assert_adapter_of(folder: Path, base: Path) -> dict[str, Any]:
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names, names
    assert "model.safetensors" not in names and not any(n.endswith((".bin", ".pt")) for n in names)
    assert not any((folder / n).is_dir() for n in names), names  # no second adapter (trl's "ref") beside it
    config = _adapter_config(folder)
    assert config["base_model_name_or_path"] == str(base.absolute())
    return config


def test_generation_one_is_a_fresh_adapter_of_the_base(base: Path, gen1: TrainResult) -> None:
    assert gen1.kind == "lora"
    config = _assert_adapter_of(gen1.output_dir, base)
    assert config["r"] == LORA.r and set(config["target_modules"]) == set(LORA.target_modules)


def test_generation_two_continues_generation_ones_adapter(base: Path, gen1: TrainResult, gen2: Trained) -> None:
    config1 = _adapter_config(gen1.output_dir)
    config2 = _assert_adapter_of(gen2.out, base)  # applies to the root base, not to generation 1
    assert (config2["r"], config2["lora_alpha"]) == (config1["r"], config1["lora_alpha"])
    assert set(config2["target_modules"]) == set(config1["target_modules"])
    w1 = load_file(gen1.output_dir / "adapter_model.safetensors")
    w2 = load_file(gen2.out / "adapter_model.safetensors")
    assert w1.keys() == w2.keys()
    moved = max((w2[k] - w1[k]).abs().max().item() for k in w1)
    assert moved > 1e-4, moved
    # Same data, same order: generation 2's first batch is scored by generation 1's model,
    # so it starts below where generation 1 started (a fresh adapter would start at the base).
    print(f"first-step loss: generation 1 {gen1.losses[0]:.3f}, generation 2 {gen2.losses[0]:.3f}")
    assert gen2.losses[0] < gen1.losses[0] - 0.01, (gen1.losses, gen2.losses)


def test_base_plus_generation_two_adapter_reproduces_the_trained_model(base: Path, gen2: Trained) -> None:
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    ids = gen2.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    ids = ids["input_ids"]
    root = AutoModelForCausalLM.from_pretrained(_adapter_config(gen2.out)["base_model_name_or_path"]).eval()
    with torch.no_grad():
        base_logits = root(ids).logits
        reloaded = PeftModel.from_pretrained(root, gen2.out).eval()
        served = reloaded(ids).logits
        trained = gen2.model.eval()(ids.to(next(gen2.model.parameters()).device)).logits.cpu()
    assert torch.allclose(served, trained, atol=1e-5), (served - trained).abs().max()
    assert (served - base_logits).abs().max() > 1e-3  # the adapter does something
    merged, _ = load_policy(gen2.out, "cpu")  # the gate's and the demo's way to load it
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, trained, atol=1e-4)


def test_another_adapter_shape_is_refused(gen1: TrainResult) -> None:
    wider = SFT.model_copy(update={"lora": LORA.model_copy(update={"r": 8})})
    with pytest.raises(AdapterMismatchError) as info:
        load_trainable_policy(gen1.output_dir, wider)
    assert info.value.differences == {"r": (4, 8)} and "lora.r=4" in str(info.value)


def test_an_adapter_on_an_adapter_is_refused(gen1: TrainResult, tmp_path: Path) -> None:
    nested = tmp_path / "nested"
    nested.mkdir()
    config = _adapter_config(gen1.output_dir) | {"base_model_name_or_path": str(gen1.output_dir)}
    (nested / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(TrainerError, match="trained on another adapter"):
        load_trainable_policy(nested, SFT)


def test_lora_off_from_an_adapter_trains_a_full_generation(
    gen1: TrainResult, demos: list[Demonstration], tmp_path: Path
) -> None:
    full = SFT.model_copy(update={"lora": LoraAdapterConfig(enabled=False), "learning_rate": 1e-3})
    result = SftTrainer(full).train(gen1.output_dir, tmp_path / "out", demos)
    names = {p.name for p in result.output_dir.iterdir()}
    assert result.kind == "full" and "model.safetensors" in names and "adapter_config.json" not in names
    assert result.losses[0] < gen1.losses[0] - 0.01, (gen1.losses, result.losses)  # it starts from generation 1


def _pairs() -> list[Pair]:
    return [Pair(_prompt(p.character_id, p.context), p.chosen, p.rejected) for p in synthetic_pairs(8, seed=4)]


@pytest.mark.parametrize("lora", [True, False], ids=["continued-adapter", "merged-full"])
def test_dpo_reference_is_the_starting_policy(base: Path, gen1: TrainResult, tmp_path: Path, lora: bool) -> None:
    """At the first step policy and reference agree exactly, so the DPO loss is ln 2; were the
    reference the root base, generation 1's change would show."""
    settings = DpoTrainerConfig(
        lora=LORA if lora else LoraAdapterConfig(enabled=False), batch_size=4, epochs=1.0, beta=1.0
    )
    result = DpoTrainer(settings).train(gen1.output_dir, tmp_path / "out", _pairs())
    assert result.kind == ("lora" if lora else "full")
    if lora:
        _assert_adapter_of(result.output_dir, base)
    assert result.losses[0] == pytest.approx(LN2, abs=1e-4), result.losses


def test_dpo_reference_would_differ_from_the_root_base(base: Path, gen1: TrainResult) -> None:
    """The check above has teeth: against the root base, generation 1's log-ratios are not 0."""
    from trainers.common.generation import reply_logprobs

    pairs = _pairs()[:4]
    convs = [p.prompt.messages for p in pairs]
    (m0, t0), (m1, t1) = load_policy(base, "cpu"), load_policy(gen1.output_dir, "cpu")

    def margins(model: Any, tok: Any) -> list[float]:
        chosen = reply_logprobs(model, tok, convs, [p.chosen for p in pairs])
        rejected = reply_logprobs(model, tok, convs, [p.rejected for p in pairs])
        return [c - r for c, r in zip(chosen, rejected, strict=True)]

    delta = [a - b for a, b in zip(margins(m1, t1), margins(m0, t0), strict=True)]
    loss_vs_root = sum(-torch.nn.functional.logsigmoid(torch.tensor(d)).item() for d in delta) / len(delta)
    assert abs(loss_vs_root - LN2) > 1e-3, (loss_vs_root, delta)


def test_a_reward_model_from_an_adapter_policy_is_a_full_classifier(gen1: TrainResult, tmp_path: Path) -> None:
    """Reward jobs start from the serving policy, which in a LoRA lineage is an adapter."""
    settings = RewardTrainerConfig(mode="pairwise", batch_size=4, epochs=1.0)
    result = RewardModelTrainer(settings).train(gen1.output_dir, tmp_path / "rm", pairs=_pairs())
    names = {p.name for p in result.output_dir.iterdir()}
    assert result.kind == "full" and "model.safetensors" in names and "adapter_config.json" not in names
    assert len(RewardModel.load(result.output_dir).score([p.prompt for p in _pairs()[:2]], ["a", "b"])) == 2
    lora_rm = settings.model_copy(update={"lora": LORA})
    with pytest.raises(TrainerError, match="needs a full start"):
        RewardModelTrainer(lora_rm).train(gen1.output_dir, tmp_path / "rm-lora", pairs=_pairs())


def test_worker_publishes_base_dir_as_the_base(base: Path, tmp_path: Path) -> None:
    settings = TrainerWorkerSettings.model_validate(
        {"registry": {"root": str(tmp_path / "reg")}, "base_dir": str(base)}
    )
    registry = CheckpointRegistry(settings.registry)
    published = register_base_model(registry, "policy", settings)
    assert published.manifest.kind == "full" and published.manifest.training["source"] == "import"
    assert (published.path / "model.safetensors").is_file()
    assert register_base_model(registry, "policy", settings).manifest == published.manifest
