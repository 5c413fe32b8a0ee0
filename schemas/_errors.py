"""The project's one exception tree. Exceptions carry data, not just text."""

from __future__ import annotations


class FlywheelError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(FlywheelError):
    """A setting is missing or inconsistent; the message names the value and the fix."""


class SchemaError(FlywheelError):
    """A message failed validation.

    Attributes:
        field: dotted path of the offending field ("" when the document as a whole is bad).
        reason: why it was refused, in words a producer can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field or '<document>'}: {reason}")


class StreamError(FlywheelError):
    """The bus failed: delivery, commit, transaction, topic administration."""

    def __init__(self, message: str, *, topic: str | None = None, retriable: bool = False) -> None:
        self.topic = topic
        self.retriable = retriable
        super().__init__(message)


class MessageTooLargeError(StreamError):
    """The bus refused a message for its size (librdkafka's ``MSG_SIZE_TOO_LARGE``).

    Attributes:
        size_bytes: key + value + headers of the refused message.
        max_bytes: the limit it broke (the producer's ``message.max.bytes``).
    """

    def __init__(self, topic: str, size_bytes: int, max_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes
        super().__init__(
            f"message to {topic!r} is {size_bytes} bytes, over the {max_bytes}-byte limit (message.max.bytes)",
            topic=topic,
        )


class MisroutedRecordError(StreamError):
    """A record's key hashes to another partition than the one it was read from: its
    producer used another partitioner (e.g. librdkafka's CRC32 default instead of murmur2),
    so the key's state would be split between two partitions.

    Attributes:
        partition: where the record was read from.
        expected_partition: where ``partitioner`` puts its key.
        partitioner: the configured partitioner (``murmur2``, ``crc32``).
    """

    reason = "misrouted"

    def __init__(self, topic: str, partition: int, expected_partition: int, partitioner: str) -> None:
        self.partition = partition
        self.expected_partition = expected_partition
        self.partitioner = partitioner
        super().__init__(
            f"misrouted: the key hashes to partition {expected_partition} of {topic!r} under {partitioner}, "
            f"the record was read from partition {partition}",
            topic=topic,
        )


class TrainerError(FlywheelError):
    """A training job, the offline gate or the checkpoint registry failed."""


class ServingError(FlywheelError):
    """An engine, the gateway or the deployment controller failed."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)
