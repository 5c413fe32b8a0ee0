"""Leader election among gateway replicas: a Redis lease with a fencing token."""

from serving.leader.elector import Leadership, default_replica_id
from serving.leader.leader_config import LeaderConfig
from serving.leader.lease import Lease, MemoryLease, RedisLease

__all__ = ["LeaderConfig", "Leadership", "Lease", "MemoryLease", "RedisLease", "default_replica_id"]
