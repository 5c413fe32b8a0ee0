"""The controller's view of ``engagement.signals``: every per-arm window partial, read from
the start of the topic (a new leader rebuilds the same view its predecessor had)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError

from schemas import ArmWindowAggregate, SchemaError, engagement_signal_adapter
from streams import Bus, Consumer, TopicPartition

AggregateKey = tuple[str, str, datetime, int, int | None]
"""(arm, model version, window start, window length, partition) of one partial."""


class SignalReader:
    def __init__(self, bus: Bus, topic: str) -> None:
        self._bus = bus
        self.topic = topic
        self._consumer: Consumer | None = None
        self.aggregates: dict[AggregateKey, ArmWindowAggregate] = {}
        self.bad = 0

    def poll(self, max_records: int = 10_000, timeout_s: float = 0.0) -> int:
        """Read whatever window aggregates are available; returns how many were taken."""
        if self._consumer is None:
            self._consumer = self._bus.consumer(**{"auto.offset.reset": "earliest"})
            self._consumer.assign({TopicPartition(self.topic, p): 0 for p in range(self._bus.partitions(self.topic))})
        taken = 0
        while True:
            records = self._consumer.consume(max_records, timeout_s)
            for record in records:
                try:
                    signal = engagement_signal_adapter.validate_json(record.value)
                except (ValidationError, SchemaError):
                    self.bad += 1  # not ours to dead-letter: the signals processor owns that topic
                    continue
                if isinstance(signal, ArmWindowAggregate):
                    self.add(signal)
                    taken += 1
            if len(records) < max_records:
                return taken
            timeout_s = 0.0

    def add(self, agg: ArmWindowAggregate) -> None:
        """Take one partial. A re-sent partial of the same window and partition replaces the earlier one."""
        self.aggregates[(agg.arm, agg.model_version, agg.window_start, agg.window_s, agg.partition)] = agg

    def values(self) -> Iterable[ArmWindowAggregate]:
        return self.aggregates.values()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
