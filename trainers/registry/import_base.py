"""Importing an external base model (the one vLLM serves) into the registry.

Policies train as LoRA adapters of the registry's ``<model>/<base_version>``; for vLLM to
apply them, that base must be the model its replicas run. ``import_base`` checks that a
folder is a complete Hugging Face checkpoint in formats the registry accepts, then
publishes it as a full checkpoint. Torch-free: the checks read JSON and safetensors
headers only.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import CheckpointManifest, TrainerError
from trainers.registry._files import PICKLE_SUFFIXES
from trainers.registry.registry import Checkpoint, CheckpointRegistry

SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class BaseModelFolderError(TrainerError):
    """A folder cannot be imported as a base model.

    Attributes:
        path: the folder.
        problems: each thing that is wrong, with what to do about it.
    """

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(f"{path} cannot be imported as a base model: " + "; ".join(problems))


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is not valid JSON ({type(exc).__name__}: {exc})"


def _safetensors_problem(path: Path) -> str | None:
    """Why a file is not a readable safetensors file (header only), or None."""
    if not path.is_file():
        return f"weight file {path.name} is missing"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is too short to be safetensors ({size} bytes)"
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER_BYTES or 8 + length > size:
            return f"{path.name} is not safetensors or is truncated (header of {length} bytes in a {size}-byte file)"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path.name} has an unreadable safetensors header"
    if not isinstance(header, dict) or not any(k != "__metadata__" for k in header):
        return f"{path.name} holds no tensors"
    return None


def _weight_problems(folder: Path) -> list[str]:
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        data, problem = _read_json(index)
        if problem:
            return [problem]
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            return [f"{SAFETENSORS_INDEX} has no weight_map"]
        shards = sorted({str(v) for v in weight_map.values()})
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
        if not shards:
            return [
                "no safetensors weights (model.safetensors, or shards with model.safetensors.index.json); "
                "the registry accepts no pickle formats: convert the weights with save_pretrained(..., "
                "safe_serialization=True)"
            ]
    return [p for p in (_safetensors_problem(folder / s) for s in shards) if p]


def _chat_template_present(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return False
    data, problem = _read_json(config)
    return problem is None and isinstance(data, dict) and bool(data.get("chat_template"))


def base_folder_problems(folder: Path) -> list[str]:
    """Everything that stops ``folder`` from being imported as a base model (empty: fine)."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    if (folder / "adapter_config.json").is_file():
        return ["it is a LoRA adapter (adapter_config.json), not a full model: import the model it was trained on"]
    problems: list[str] = []
    config = folder / "config.json"
    if not config.is_file():
        problems.append("no config.json (not a Hugging Face model folder)")
    else:
        data, problem = _read_json(config)
        if problem:
            problems.append(problem)
        elif not isinstance(data, dict) or not data.get("model_type"):
            problems.append("config.json has no model_type (not a transformers model config)")
    problems += _weight_problems(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer ({', '.join(TOKENIZER_FILES)}): save the tokenizer into the folder")
    elif not _chat_template_present(folder):
        problems.append(
            "the tokenizer has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json): "
            "serving and training format conversations with it; use the chat (instruct) model's tokenizer"
        )
    for p in sorted(folder.rglob("*")):
        name = p.relative_to(folder).as_posix()
        if p.is_symlink():
            problems.append(
                f"{name} is a symbolic link (a Hugging Face cache snapshot?): the registry copies plain files "
                "only; copy the folder with `cp -rL` or download with `hf download --local-dir`"
            )
        elif p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES:
            problems.append(f"{name} is a pickle-based file; the registry refuses it: delete it (keep the safetensors)")
    return problems


def check_base_folder(folder: Path) -> None:
    """Raise BaseModelFolderError listing every problem of ``folder``, if any."""
    problems = base_folder_problems(folder)
    if problems:
        raise BaseModelFolderError(folder, problems)


def folder_fingerprint(folder: Path) -> str:
    """Identity of a folder's contents, cheap for any size: its config.json and every file's
    name and size. A second import of the same folder is then recognised as the same job."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"\0{p.relative_to(folder).as_posix()}\0{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def import_base(registry: CheckpointRegistry, folder: Path, model: str, version: str) -> Checkpoint:
    """Check ``folder`` and publish it as ``<model>/<version>`` (kind full, no parent).

    Idempotent for the same folder contents; a version already published from something
    else raises VersionConflictError (versions are immutable: import under another name)."""
    check_base_folder(folder)
    config, _ = _read_json(folder / "config.json")
    manifest = CheckpointManifest(
        model=model,
        version=version,
        parent=None,
        kind="full",
        job_id=f"import:{folder_fingerprint(folder)}",
        training={"source": "import", "imported_from": str(folder.absolute()), "model_type": config["model_type"]},
        status="published",
        created_ts=datetime.now(UTC),
    )
    return registry.publish(folder, manifest)
