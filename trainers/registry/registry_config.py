"""Settings of the checkpoint registry."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def _default_root() -> Path:
    return Path.home() / ".cache" / "flywheel" / "registry"


class RegistryConfig(BaseModel):
    """Where checkpoints live: ``<root>/<model>/<version>/`` with a ``manifest.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path = Field(
        default_factory=_default_root,
        description="Registry root folder (a shared filesystem when workers run on several hosts).",
    )
