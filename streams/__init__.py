"""The streaming layer: the bus (Kafka and embedded), the producer SDK, dead letters,
and (in ``streams.processors`` / ``streams.runners``) the stream processors.

``trainers`` and ``serving`` use only what this module exports."""

from streams.bus import (
    Bus,
    Consumer,
    EmbeddedBus,
    KafkaBus,
    KafkaSettings,
    Offsets,
    Producer,
    Record,
    TopicPartition,
    partition_for_key,
)
from streams.dlq import DeadLetter, send_to_dlq
from streams.dlq_config import DeadLetterConfig
from streams.sdk import ChatEventProducer, ProduceInterruptedError, ProduceSummary, produce_lines

__all__ = [
    "Bus",
    "ChatEventProducer",
    "Consumer",
    "DeadLetter",
    "DeadLetterConfig",
    "EmbeddedBus",
    "KafkaBus",
    "KafkaSettings",
    "Offsets",
    "ProduceInterruptedError",
    "ProduceSummary",
    "Producer",
    "Record",
    "TopicPartition",
    "partition_for_key",
    "produce_lines",
    "send_to_dlq",
]
