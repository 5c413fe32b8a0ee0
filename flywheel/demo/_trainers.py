"""The trainer side of the one-process deployment: base model, trainer worker, and the
planted bad generation."""

from __future__ import annotations

from pathlib import Path


def base_model_dir() -> Path:
    """The locally built tiny base model (cached by content hash)."""
    from trainers.bootstrap.base_model import ensure_base_model

    return ensure_base_model()
