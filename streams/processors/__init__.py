"""Transport-free stream processors: engagement signals, sample curation, sample buffer.

Each is a class with explicit, JSON-serialisable state per source partition; the runners
in ``streams.runners`` drive them on Kafka, Faust or the embedded bus."""

from streams.processors._base import META, Output, PartitionState, Processor, ProcessorBase, SourcePartition
from streams.processors.signals import SignalsProcessor
from streams.processors.signals_config import SignalsConfig
from streams.processors.synthetic import synthetic_events

__all__ = [
    "META", "Output", "PartitionState", "Processor", "ProcessorBase", "SignalsConfig", "SignalsProcessor",
    "SourcePartition", "synthetic_events",
]
