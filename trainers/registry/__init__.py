"""Checkpoint registry: ``<root>/<model>/<version>/`` with a checksummed manifest,
atomic publish, immutable versions, verification on every load; ``import_base`` publishes
an external base model (the one vLLM serves)."""

from trainers.registry.import_base import BaseModelFolderError, check_base_folder, import_base
from trainers.registry.registry import (
    Checkpoint,
    CheckpointRefusedError,
    CheckpointRegistry,
    VersionConflictError,
    lora_base_of,
    version_for_job,
)
from trainers.registry.registry_config import RegistryConfig

__all__ = [
    "BaseModelFolderError",
    "Checkpoint",
    "CheckpointRefusedError",
    "CheckpointRegistry",
    "RegistryConfig",
    "VersionConflictError",
    "check_base_folder",
    "import_base",
    "lora_base_of",
    "version_for_job",
]
