"""Routing state shared by gateway replicas, and the bookkeeping of the leader that writes it.

Per public model name the store keeps:
- the latest ``DeploymentState`` (every replica routes by it),
- the running experiment's bookkeeping (an opaque JSON document the canary controller
  owns), written together with the state so a new leader continues the same experiment,
- the version being prepared (loaded on every replica before its canary opens), and
  the versions already tried (a rolled-back candidate is never canaried again),
- request counts per arm, version and outcome, summed over all replicas (guardrails),
- each live replica's report of the versions it has ready.

Writes that carry decisions are fenced: each carries the writer's fencing token, and a
token below the highest one seen for the model is refused with ``StaleLeaderError``.

``RedisRoutingStore`` (``serving.routing.redis_store``) is the production store;
``MemoryRoutingStore`` serves one process (the demo, unit tests).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from schemas import DeploymentState
from serving._errors import StaleLeaderError

RequestKey = tuple[str, str, str]
"""(arm, version, outcome) of a request count."""


@dataclass(frozen=True)
class ReplicaReport:
    """What one replica has loaded, as it last said (reports expire with the replica)."""

    replica: str
    ready: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    """version → why it could not be loaded here."""


@runtime_checkable
class RoutingStore(Protocol):
    def get(self, model: str) -> DeploymentState | None:
        """The latest state of ``model`` (None: never deployed)."""

    def put(self, state: DeploymentState, token: int = 0, experiment: str | None = None) -> None:
        """Replace the state of ``state.model`` and its experiment record together (None:
        no experiment runs). Only the leader calls this; fenced by ``token``."""

    def experiment(self, model: str) -> str | None:
        """The running experiment's bookkeeping, as the leader last wrote it."""

    def put_experiment(self, model: str, experiment: str, token: int) -> None:
        """Update the bookkeeping alone (running p-values after an evaluation); fenced."""

    def claim(self, model: str, token: int) -> None:
        """Raise the fence to ``token``: from now on writes with a lower token are refused."""

    def preparing(self, model: str) -> str | None:
        """The version every replica should load before its canary opens."""

    def set_preparing(self, model: str, version: str | None, token: int) -> None: ...

    def tried(self, model: str) -> set[str]:
        """Versions a leader has already brought in (deployed, canaried or rejected): never again."""

    def add_tried(self, model: str, version: str, token: int) -> None: ...

    def add_request_counts(self, model: str, deltas: dict[RequestKey, int]) -> None:
        """Add this replica's new request counts to the fleet's."""

    def request_counts(self, model: str) -> dict[RequestKey, int]:
        """Request counts of every replica, summed."""

    def report_replica(self, model: str, report: ReplicaReport, ttl_s: float) -> None:
        """Publish what this replica has loaded; the report lapses after ``ttl_s``."""

    def replicas(self, model: str) -> list[ReplicaReport]:
        """Reports of the live replicas."""

    def models(self) -> list[str]: ...

    def close(self) -> None: ...


def refuse_stale(model: str, token: int, fence: int) -> None:
    if token < fence:
        raise StaleLeaderError(
            f"write to {model} refused: fencing token {token} is below {fence} (a newer leader took over)",
            token=token,
            fence=fence,
        )


class MemoryRoutingStore:
    """In-process store for the embedded demo and unit tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}
        self._experiments: dict[str, str] = {}
        self._fences: dict[str, int] = {}
        self._preparing: dict[str, str] = {}
        self._tried: dict[str, set[str]] = {}
        self._requests: dict[str, Counter[RequestKey]] = {}
        self._replicas: dict[tuple[str, str], tuple[float, ReplicaReport]] = {}

    def get(self, model: str) -> DeploymentState | None:
        with self._lock:
            return self._states.get(model)

    def _fenced(self, model: str, token: int) -> None:
        """Check and raise the fence; the caller holds the lock."""
        refuse_stale(model, token, self._fences.get(model, 0))
        self._fences[model] = token

    def put(self, state: DeploymentState, token: int = 0, experiment: str | None = None) -> None:
        with self._lock:
            self._fenced(state.model, token)
            self._states[state.model] = state
            if experiment is None:
                self._experiments.pop(state.model, None)
            else:
                self._experiments[state.model] = experiment

    def experiment(self, model: str) -> str | None:
        with self._lock:
            return self._experiments.get(model)

    def put_experiment(self, model: str, experiment: str, token: int) -> None:
        with self._lock:
            self._fenced(model, token)
            self._experiments[model] = experiment

    def claim(self, model: str, token: int) -> None:
        with self._lock:
            self._fenced(model, token)

    def preparing(self, model: str) -> str | None:
        with self._lock:
            return self._preparing.get(model)

    def set_preparing(self, model: str, version: str | None, token: int) -> None:
        with self._lock:
            self._fenced(model, token)
            if version is None:
                self._preparing.pop(model, None)
            else:
                self._preparing[model] = version

    def tried(self, model: str) -> set[str]:
        with self._lock:
            return set(self._tried.get(model, ()))

    def add_tried(self, model: str, version: str, token: int) -> None:
        with self._lock:
            self._fenced(model, token)
            self._tried.setdefault(model, set()).add(version)

    def add_request_counts(self, model: str, deltas: dict[RequestKey, int]) -> None:
        with self._lock:
            self._requests.setdefault(model, Counter()).update(deltas)

    def request_counts(self, model: str) -> dict[RequestKey, int]:
        with self._lock:
            return dict(self._requests.get(model, {}))

    def report_replica(self, model: str, report: ReplicaReport, ttl_s: float) -> None:
        with self._lock:
            self._replicas[(model, report.replica)] = (time.monotonic() + ttl_s, report)

    def replicas(self, model: str) -> list[ReplicaReport]:
        now = time.monotonic()
        with self._lock:
            return [r for (m, _), (until, r) in sorted(self._replicas.items()) if m == model and until > now]

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def close(self) -> None:
        pass
