"""Loading policies from folders: a full model, or a LoRA adapter over its base."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_policy(path: Path, device: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``from_pretrained`` on a folder, as for any Hugging Face checkpoint; a LoRA adapter
    folder is loaded onto the base model it names and merged for inference."""
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_path)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.to(device or default_device()).eval(), tokenizer
