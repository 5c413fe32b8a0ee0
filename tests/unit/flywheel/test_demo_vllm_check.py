"""`flywheel demo --engine vllm` refuses to start unless the vLLM server serves this run's
base model under the name the engine asks for, with a message that says how to start it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.demo.runtime import check_vllm_serves
from schemas import ServingError
from tests._serving import port_nobody_listens_on
from tests.kits.vllm_compat_server import VllmCompatServer

pytestmark = pytest.mark.server


def test_no_server_names_the_command_that_starts_one(tmp_path: Path) -> None:
    with port_nobody_listens_on() as port, pytest.raises(ServingError, match=r"deploy/local/vllm\.sh start"):
        check_vllm_serves(f"http://127.0.0.1:{port}", "policy@base", tmp_path)


def test_a_server_of_another_model_is_refused(tmp_path: Path) -> None:
    with VllmCompatServer(served=("policy@v7",)) as server, pytest.raises(ServingError, match="not 'policy@base'"):
        check_vllm_serves(server.url, "policy@base", tmp_path)
    with VllmCompatServer(served=("policy@base",)) as server:
        check_vllm_serves(server.url, "policy@base", tmp_path)  # the stand-in reports no root: accepted
