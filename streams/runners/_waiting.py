"""What the transactional runner holds in memory while a commit is in flight."""

from __future__ import annotations

from collections.abc import Mapping

from streams.bus import Producer
from streams.processors import Output


class WaitingOutputs:
    """What waits in memory while a commit is in flight: the processor's outputs as they
    came (appended a batch at a time, no per-message Python work) and dead letters (a producer's ``produce``)."""

    def __init__(self) -> None:
        self._outputs: list[Output] = []
        self._messages: list[tuple[str, bytes, str | None, Mapping[str, bytes] | None]] = []

    def hold(self, outputs: list[Output]) -> None:
        self._outputs += outputs

    def produce(
        self, topic: str, value: bytes, key: str | None = None, headers: Mapping[str, bytes] | None = None
    ) -> None:
        self._messages.append((topic, value, key, headers))

    def take_outputs(self) -> list[Output]:
        outputs, self._outputs = self._outputs, []
        return outputs

    def replay(self, producer: Producer) -> None:
        messages, self._messages = self._messages, []
        for topic, value, key, headers in messages:
            producer.produce(topic, value, key=key, headers=headers)

    def clear(self) -> None:
        self._outputs.clear()
        self._messages.clear()
