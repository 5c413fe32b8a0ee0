"""Sticky user → arm assignment: a stable, platform-independent hash (FNV-1a 32-bit)
of ``salt ‖ user_id`` into 10,000 buckets. A user is in the candidate arm iff their
bucket is below the candidate share in basis points, so raising the share only moves
users from baseline to candidate, never back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas import DeploymentState
from serving._errors import EngineUnavailableError, ModelNotFoundError

Arm = Literal["baseline", "candidate"]
BUCKETS = 10_000
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bits: the same value in every language and on every platform."""
    h = _FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def bucket(salt: str, user_id: str) -> int:
    """The user's bucket in [0, 10000) for this experiment salt."""
    return fnv1a_32(salt.encode() + user_id.encode()) % BUCKETS


def arm_for(salt: str, user_id: str, share_bp: int) -> Arm:
    return "candidate" if bucket(salt, user_id) < share_bp else "baseline"


@dataclass(frozen=True)
class Route:
    """Where one request goes: the arm and the exact model version it is served by."""

    model: str
    arm: Arm
    version: str


def route(state: DeploymentState, user_id: str | None) -> Route:
    """Route one request under ``state``. Users without an id always get the baseline:
    without a stable unit of randomisation they cannot be in the experiment."""
    if state.baseline_version is None and state.candidate_version is None:
        raise ModelNotFoundError(f"model {state.model!r} has no version deployed yet")
    if (
        state.candidate_version is not None
        and state.status in ("canary", "paused")
        and user_id is not None
        and arm_for(state.experiment_salt, user_id, state.share_bp) == "candidate"
    ):
        return Route(state.model, "candidate", state.candidate_version)
    if state.baseline_version is None:
        # Only a candidate exists (first deployment still warming): nobody gets it yet.
        raise EngineUnavailableError(f"model {state.model!r} has no baseline yet", retry_after_s=1.0)
    return Route(state.model, "baseline", state.baseline_version)
