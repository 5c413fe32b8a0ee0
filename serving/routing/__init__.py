"""Sticky canary assignment and the shared routing state."""

from serving.routing.assignment import BUCKETS, Arm, Route, arm_for, bucket, fnv1a_32, route
from serving.routing.store import MemoryRoutingStore, RedisRoutingStore, RoutingStore

__all__ = [
    "BUCKETS",
    "Arm",
    "MemoryRoutingStore",
    "RedisRoutingStore",
    "Route",
    "RoutingStore",
    "arm_for",
    "bucket",
    "fnv1a_32",
    "route",
]
