"""Checkpoint registry: ``<root>/<model>/<version>/`` with a checksummed manifest,
atomic publish, immutable versions, verification on every load."""

from trainers.registry.registry import (
    Checkpoint,
    CheckpointRefusedError,
    CheckpointRegistry,
    VersionConflictError,
    version_for_job,
)
from trainers.registry.registry_config import RegistrySettings

__all__ = [
    "Checkpoint",
    "CheckpointRefusedError",
    "CheckpointRegistry",
    "RegistrySettings",
    "VersionConflictError",
    "version_for_job",
]
