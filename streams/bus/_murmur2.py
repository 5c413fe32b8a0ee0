"""Kafka's default partitioner (Java client, aiokafka, Faust): murmur2 of the key bytes.

librdkafka's ``murmur2_random`` uses the same function; the embedded bus uses this one so
every key lands on the partition a Java client would choose.
"""

from __future__ import annotations

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit murmur2 exactly as ``org.apache.kafka.common.utils.Utils.murmur2`` (as unsigned)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        j = i * 4
        k = data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & 3
    j = n4 * 4
    if tail == 3:
        h ^= data[j + 2] << 16
    if tail >= 2:
        h ^= data[j + 1] << 8
    if tail >= 1:
        h ^= data[j]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """``toPositive(murmur2(key)) % partitions``, Java's formula."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
