"""Imports only point down: schemas ← streams ← trainers | serving ← flywheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    run = subprocess.run([lint, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout or "kept" in run.stdout


def test_schemas_import_nothing_of_the_project() -> None:
    for path in (ROOT / "schemas").rglob("*.py"):
        text = path.read_text()
        for other in ("streams", "trainers", "serving", "flywheel"):
            assert f"from {other}" not in text and f"import {other}" not in text, f"{path} imports {other}"
