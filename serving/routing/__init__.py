"""Sticky canary assignment and the shared routing state."""

from serving.routing.assignment import BUCKETS, Arm, Route, arm_for, bucket, fnv1a_32, route
from serving.routing.pins import ConversationPins
from serving.routing.redis_store import RedisRoutingStore
from serving.routing.store import MemoryRoutingStore, ReplicaReport, RequestKey, RoutingStore

__all__ = [
    "BUCKETS",
    "Arm",
    "ConversationPins",
    "MemoryRoutingStore",
    "RedisRoutingStore",
    "ReplicaReport",
    "RequestKey",
    "Route",
    "RoutingStore",
    "arm_for",
    "bucket",
    "fnv1a_32",
    "route",
]
