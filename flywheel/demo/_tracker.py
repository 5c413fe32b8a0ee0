"""The demo's view of generations, as the topics tell them: each policy checkpoint
announced on models.checkpoints, then the canary's decisions about it."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.demo.report import Decision
from schemas import CanaryDecision, CheckpointManifest, DeploymentState, MetricResult

POLICY_JOB_KINDS = frozenset({"sft", "dpo", "grpo"})
FINAL: dict[str, Decision] = {"promote": "promoted", "rollback": "rolled_back", "reject": "rejected"}


@dataclass
class Generation:
    number: int
    manifest: CheckpointManifest
    planted: bool = False
    decision: Decision | None = None
    reason: str = ""
    share_bp: int = 0
    metrics: tuple[MetricResult, ...] = ()
    seen_s: float = 0.0
    canary_started_s: float | None = None
    decided_s: float | None = None


def plant_due(generation: int | None, tracker: Tracker) -> bool:
    """Queue the planted job now: generation ``generation`` is planted, and exactly the
    generations before it exist, every one decided (so the next to train is the Nth)."""
    return (
        generation is not None
        and tracker.planted_job is None
        and len(tracker.generations) == generation - 1
        and len(tracker.decided()) == len(tracker.generations)
    )


class Tracker:
    """Generations as the topics tell them: manifests, then canary decisions."""

    def __init__(self, model: str, base_version: str) -> None:
        self.model = model
        self.base_version = base_version
        self.generations: dict[str, Generation] = {}
        self.state: DeploymentState | None = None
        self.planted_job: str | None = None
        self.reward_models = 0

    def on_manifest(self, m: CheckpointManifest, now_s: float) -> Generation | None:
        if m.version == self.base_version or m.version in self.generations:
            return None
        if m.model != self.model or (m.job_kind is not None and m.job_kind not in POLICY_JOB_KINDS):
            self.reward_models += 1
            return None
        g = Generation(
            len(self.generations) + 1, m, planted=m.job_id is not None and m.job_id == self.planted_job, seen_s=now_s
        )
        self.generations[m.version] = g
        if m.status != "published" or m.eval is None or not m.eval.passed:
            g.decision, g.decided_s = "rejected", now_s
            g.reason = "offline gate: " + "; ".join(m.eval.reasons if m.eval else ("no evaluation",))
        return g

    def on_decision(self, d: CanaryDecision, now_s: float) -> Generation | None:
        g = self.generations.get(d.candidate_version or "")
        if g is None or g.decision is not None:
            return None
        if d.metrics:
            g.metrics = d.metrics
        if g.canary_started_s is None:
            g.canary_started_s = now_s
        g.share_bp = max(g.share_bp, d.share_bp_after, d.share_bp_before)
        if d.action in FINAL:
            g.decision, g.reason, g.decided_s = FINAL[d.action], d.reason, now_s
            return g
        return None

    def decided(self) -> list[Generation]:
        return [g for g in self.generations.values() if g.decision is not None]

    def awaiting_canary(self, now_s: float, within_s: float = 30.0) -> bool:
        """A generation passed the gate in the last ``within_s`` and has no decision yet:
        the hot-swap controller is loading it."""
        return any(g.decision is None and now_s - g.seen_s < within_s for g in self.generations.values())

    def in_canary(self) -> Generation | None:
        s = self.state
        if s is None or s.candidate_version is None:
            return None
        return self.generations.get(s.candidate_version)
