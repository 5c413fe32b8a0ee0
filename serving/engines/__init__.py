"""Engines: the Engine protocol, the embedded transformers engine, the vLLM client."""

from serving.engines._checkpoint import verify_checkpoint_dir
from serving.engines.base import Delta, Engine, GenerationRequest, ModelSource, SamplingParams, complete
from serving.engines.embedded import EmbeddedEngine
from serving.engines.embedded_config import EmbeddedEngineConfig
from serving.engines.vllm import VllmEngine
from serving.engines.vllm_config import VllmEngineConfig

__all__ = [
    "Delta",
    "EmbeddedEngine",
    "EmbeddedEngineConfig",
    "Engine",
    "GenerationRequest",
    "ModelSource",
    "SamplingParams",
    "VllmEngine",
    "VllmEngineConfig",
    "complete",
    "verify_checkpoint_dir",
]
