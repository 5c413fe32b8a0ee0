"""The bus: one producer/consumer interface, Kafka and embedded implementations."""

from streams.bus._api import Bus, Consumer, Offsets, Producer, RebalanceCallback, Record, TopicPartition
from streams.bus._murmur2 import murmur2, partition_for_key
from streams.bus.embedded import EmbeddedBus
from streams.bus.kafka import KafkaBus
from streams.bus.kafka_settings import KafkaSettings

__all__ = [
    "Bus",
    "Consumer",
    "EmbeddedBus",
    "KafkaBus",
    "KafkaSettings",
    "Offsets",
    "Producer",
    "RebalanceCallback",
    "Record",
    "TopicPartition",
    "murmur2",
    "partition_for_key",
]
