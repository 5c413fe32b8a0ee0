"""Loading policies from folders: a full model, or a LoRA adapter over its base.

``load_policy`` is for inference (an adapter is merged). ``load_trainable_policy`` is where
every policy trainer gets its starting model, and it decides the LoRA lineage: vLLM
serves one base and applies runtime adapters to it, so a generation trained as LoRA from
an adapter continues that adapter over the same root base (never LoRA-on-LoRA)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from schemas import TrainerError
from trainers.common.train_config import LoraAdapterConfig, TrainerConfig
from trainers.common.training import peft_config

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_policy(path: Path, device: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``from_pretrained`` on a folder, as for any Hugging Face checkpoint; a LoRA adapter
    folder is loaded onto the base model it names and merged for inference."""
    adapter = path / ADAPTER_CONFIG
    if adapter.is_file():
        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_path)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.to(device or default_device()).eval(), tokenizer


class AdapterMismatchError(TrainerError):
    """The LoRA settings ask for another adapter shape than the one a generation continues.

    Attributes:
        path: the adapter folder being continued.
        differences: setting name → (the adapter's value, the settings' value).
    """

    def __init__(self, path: Path, differences: dict[str, tuple[object, object]]) -> None:
        self.path = path
        self.differences = differences
        said = ", ".join(f"{k}: adapter {a!r}, settings {s!r}" for k, (a, s) in differences.items())
        fixes = " ".join(f"lora.{k}={a!r}" for k, (a, _) in differences.items())
        super().__init__(
            f"cannot continue the LoRA adapter {path}: {said}. A generation continues its parent's adapter "
            f"with the same shape: set {fixes}, or start a new lineage from a full checkpoint "
            "(lora.enabled=false trains a full-weight generation)"
        )


@dataclass
class TrainablePolicy:
    """A starting policy, ready to hand to a trl trainer.

    Attributes:
        model: a full model, or (continuing an adapter) a ``PeftModel`` over the root base
            whose adapter is trainable.
        tokenizer: the start's tokenizer.
        peft_config: the fresh LoRA config for trl to wrap ``model`` in; None when ``model``
            trains as it is (full fine-tuning, or the adapter it already carries).
        lora_base: the full model the trained adapter applies to (written into the saved
            ``adapter_config.json``); None for full fine-tuning.
        start: what the start folder held.
    """

    model: Any
    tokenizer: PreTrainedTokenizerBase
    peft_config: LoraConfig | None
    lora_base: Path | None
    start: Literal["full", "lora"]

    @property
    def continues_adapter(self) -> bool:
        return isinstance(self.model, PeftModel)


def adapter_config_of(path: Path) -> dict[str, Any] | None:
    """The ``adapter_config.json`` of a LoRA adapter folder; None for a full model."""
    file = path / ADAPTER_CONFIG
    return json.loads(file.read_text()) if file.is_file() else None


def root_base_of(adapter_dir: Path, config: dict[str, Any]) -> Path:
    """The full model an adapter applies to (its ``base_model_name_or_path``); refused when
    missing or itself an adapter (LoRA-on-LoRA, which vLLM cannot serve)."""
    name = config.get("base_model_name_or_path")
    if not name:
        raise TrainerError(f"LoRA adapter {adapter_dir} names no base_model_name_or_path in {ADAPTER_CONFIG}")
    base = Path(name)
    if (base / ADAPTER_CONFIG).is_file():
        raise TrainerError(
            f"LoRA adapter {adapter_dir} was trained on another adapter ({base}); vLLM applies adapters to one "
            "full base only, so this lineage cannot be continued: train from a full checkpoint"
        )
    if not (base / "config.json").is_file():
        raise TrainerError(f"base model {base} of the LoRA adapter {adapter_dir} is not a model folder")
    return base


def _shape_differences(config: dict[str, Any], lora: LoraAdapterConfig) -> dict[str, tuple[object, object]]:
    targets = config.get("target_modules")
    adapter_targets = {targets} if isinstance(targets, str) else set(targets or ())
    out: dict[str, tuple[object, object]] = {}
    if config.get("r") != lora.r:
        out["r"] = (config.get("r"), lora.r)
    if config.get("lora_alpha") != lora.alpha:
        out["alpha"] = (config.get("lora_alpha"), lora.alpha)
    if adapter_targets != set(lora.target_modules):
        out["target_modules"] = (tuple(sorted(adapter_targets)), lora.target_modules)
    return out


def load_trainable_policy(
    policy_dir: Path, settings: TrainerConfig, *, merged_start_dir: Path | None = None
) -> TrainablePolicy:
    """The starting model of a policy trainer and the LoRA config to hand to trl.

    * full start, LoRA on: the model and a fresh LoraConfig (the adapter applies to this start);
    * full start, LoRA off: the model, trained in full;
    * adapter start, LoRA on: the root base with the start's adapter loaded trainable, no
      new config: the generation continues the same adapter, so it applies to the same base
      vLLM serves. Settings asking for another rank, alpha or target modules are refused
      (AdapterMismatchError) rather than ignored; dropout is the adapter's own;
    * adapter start, LoRA off: the merged model, trained in full — a full-weight generation,
      which vLLM serves as a new base (blue/green), not as an adapter.

    ``merged_start_dir``: for the last case, where to write the merged start so that the
    model's ``name_or_path`` is the start. DPO (and GRPO with a KL penalty) build their
    reference model by loading that path; without this they would load the root base.
    """
    config = adapter_config_of(policy_dir)
    lora = settings.lora
    if config is None:
        model = AutoModelForCausalLM.from_pretrained(policy_dir)
        fresh = peft_config(settings)
        tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        return TrainablePolicy(model, tokenizer, fresh, policy_dir if fresh is not None else None, "full")
    base_dir = root_base_of(policy_dir, config)
    if lora.enabled and (differences := _shape_differences(config, lora)):
        raise AdapterMismatchError(policy_dir, differences)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    if lora.enabled:
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        continued = PeftModel.from_pretrained(base, policy_dir, is_trainable=True)
        log.info("continuing the LoRA adapter %s over its base %s", policy_dir, base_dir)
        return TrainablePolicy(continued, tokenizer, None, base_dir, "lora")
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), policy_dir).merge_and_unload()
    log.info("LoRA off: merging the adapter %s into %s for a full-weight generation", policy_dir, base_dir)
    if merged_start_dir is not None:
        merged.save_pretrained(merged_start_dir, safe_serialization=True)
        del merged
        merged = AutoModelForCausalLM.from_pretrained(merged_start_dir)
    merged.requires_grad_(True)  # peft froze the base weights when it loaded the adapter
    return TrainablePolicy(merged, tokenizer, None, None, "lora")
