"""Our murmur2 partitioner agrees with aiokafka's (Java's formula) on many keys."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams import partition_for_key
from streams.bus import murmur2


def test_matches_aiokafka_on_random_keys() -> None:
    rng = random.Random(1)
    for _ in range(5000):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF


def test_known_java_values() -> None:
    # Values from Kafka's own UtilsTest (murmur2 of "21" = -973932308, of "foobar" = -790332482).
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert partition_for_key(b"user-1", 8) == (murmur2(b"user-1") & 0x7FFFFFFF) % 8
