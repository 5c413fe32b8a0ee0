"""One real vLLM server for every test in this folder, started by deploy/local/vllm.sh on
the bootstrap base model and stopped after the folder's last test (it holds a core).
With more than one core it runs entirely on the first: the blue/green test starts a second
server on the last core, which an unpinned first server's busy-polling processes would
starve (the blue/green test alone: 159 s unpinned, 62 s pinned; 393 s unpinned in the suite).

The folder is not called ``vllm``: pytest puts tests/integration on sys.path, and a folder
of that name there is an importable ``vllm`` to trl, which then takes vLLM for installed
and fails to import its GRPO trainer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._vllm import LocalVllm, make_adapter


@pytest.fixture(scope="package")
def base_dir() -> Path:
    from trainers.bootstrap.base_model import ensure_base_model

    return ensure_base_model()


@pytest.fixture(scope="package")
def vllm(base_dir: Path) -> Iterator[LocalVllm]:
    cores = sorted(os.sched_getaffinity(0))
    server = LocalVllm(base_dir, cpu_bind=str(cores[0]) if len(cores) > 1 else None)
    server.start()
    yield server
    if server.started_here:
        server.stop()


@pytest.fixture(scope="package")
def adapters(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three adapters over the base, a generation each, as the registry would hold them."""
    root = tmp_path_factory.mktemp("adapters")
    return {v: make_adapter(base_dir, root / v, seed=i) for i, v in enumerate(("a1", "a2", "a3"), start=1)}
