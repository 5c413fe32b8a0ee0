"""Transport-free stream processors: engagement signals, sample curation, sample buffer.

Each is a class with explicit state per source partition (slotted dataclasses, turned
into changelog bytes by the processor's versioned codec); the runners in
``streams.runners`` drive them on Kafka, Faust or the embedded bus."""

from streams.processors._base import META, Output, PartitionState, Processor, ProcessorBase, SourcePartition
from streams.processors.buffer import BufferProcessor, job_id_for
from streams.processors.buffer_config import POLICY, POLICY_RECIPES, BufferConfig, PolicyRecipe
from streams.processors.curation import CurationProcessor
from streams.processors.curation_config import CurationConfig
from streams.processors.pii import find_pii, redact
from streams.processors.signals import SignalsProcessor
from streams.processors.signals_config import SignalsConfig

__all__ = [
    "META",
    "POLICY",
    "POLICY_RECIPES",
    "BufferConfig",
    "BufferProcessor",
    "CurationConfig",
    "CurationProcessor",
    "Output",
    "PartitionState",
    "PolicyRecipe",
    "Processor",
    "ProcessorBase",
    "SignalsConfig",
    "SignalsProcessor",
    "SourcePartition",
    "find_pii",
    "job_id_for",
    "redact",
]
