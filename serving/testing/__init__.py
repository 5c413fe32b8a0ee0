"""Test stand-ins: a deterministic engine, and a server that implements the vLLM HTTP
endpoints the vLLM engine uses (vLLM itself cannot run on CPU-only machines)."""

from serving.testing.scripted_engine import ScriptedEngine, scripted_reply
from serving.testing.vllm_compat_server import VllmCompatServer, create_vllm_compat_app

__all__ = ["ScriptedEngine", "VllmCompatServer", "create_vllm_compat_app", "scripted_reply"]
