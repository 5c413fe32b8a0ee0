"""Engines: the Engine protocol, the embedded transformers engine, the vLLM client."""

from serving.engines._checkpoint import verify_checkpoint_dir
from serving.engines.base import (
    ContextWindow,
    Delta,
    Engine,
    GenerationRequest,
    ModelSource,
    SamplingParams,
    complete,
    prompt_chars,
)
from serving.engines.embedded import EmbeddedEngine, EmbeddedStats
from serving.engines.embedded_config import EmbeddedEngineConfig
from serving.engines.vllm import VllmEngine
from serving.engines.vllm_config import VllmEngineConfig

__all__ = [
    "ContextWindow",
    "Delta",
    "EmbeddedEngine",
    "EmbeddedEngineConfig",
    "EmbeddedStats",
    "Engine",
    "GenerationRequest",
    "ModelSource",
    "SamplingParams",
    "VllmEngine",
    "VllmEngineConfig",
    "complete",
    "prompt_chars",
    "verify_checkpoint_dir",
]
