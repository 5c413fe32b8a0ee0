"""The locally built base model is reproducible: the same settings give the same weights
whatever thread count the building process has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

# Small enough to build in seconds, big enough that thread-split float sums would show.
_BUILD = """
import sys, torch
from pathlib import Path
from trainers.bootstrap.base_model import build_base_model, weights_sha256
from trainers.bootstrap.base_model_config import BaseModelConfig
torch.set_num_threads(int(sys.argv[2]))
settings = BaseModelConfig(cache_dir=Path(sys.argv[1]), corpus_size=160, epochs=1, hidden_size=64,
                             intermediate_size=128, vocab_size=600)
out = Path(sys.argv[1]) / "model"
out.mkdir()
build_base_model(settings, out)
assert torch.get_num_threads() == int(sys.argv[2]), "the build must give the caller's thread count back"
print(weights_sha256(out))
"""


def _build(tmp: Path, threads: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(tmp), str(threads)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_same_weights_at_any_thread_count(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert _build(one, threads=1) == _build(two, threads=2)
