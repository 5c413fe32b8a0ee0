"""The trainer worker: trainer.jobs → lease → train → gate → registry → models.checkpoints.
``TrainerWorker`` lives in ``trainers.worker.worker`` (imports torch); its settings and
the lease stores are importable without it."""

from trainers.worker.lease import InMemoryLeaseStore, LeaseKeeper, LeaseStore, RedisLeaseStore
from trainers.worker.worker_config import TrainerWorkerSettings

__all__ = ["InMemoryLeaseStore", "LeaseKeeper", "LeaseStore", "RedisLeaseStore", "TrainerWorkerSettings"]
