"""The deployment controller: the only writer of routing state.

It opens a canary for a loaded candidate, reads per-arm window aggregates from
``engagement.signals``, runs the analysis after each poll, and moves the candidate
share along the configured steps — or rolls back, halts or promotes. Every decision,
with its statistics, goes to ``serving.deployments`` (keyed by
``schemas.deployment_record_key``) and to Prometheus; operators' actions (admin API)
go through the same path with their name and reason.

With several gateway replicas only the leader (``serving.leader.Leadership``) decides:
every write carries its fencing token, the experiment's bookkeeping is written to the
routing store with the state, and a replica that becomes leader reads it back, so it
continues the same experiment (burn-ins, step start, running p-values). Without a
``leadership`` the controller is the only one (one process) and always decides.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Literal

from schemas import (
    ArmWindowAggregate,
    CanaryAction,
    CanaryDecision,
    DeploymentState,
    FlywheelError,
    Topics,
    deployment_record_key,
)
from serving import _metrics as m
from serving._errors import DeploymentStateError, NotLeaderError, StaleLeaderError
from serving.canary._experiment import Experiment, stored_experiment
from serving.canary._records import build_decision
from serving.canary._signal_reader import AggregateKey, SignalReader
from serving.canary.analysis import Analysis, ArmTotals, analyse, decide
from serving.canary.canary_config import CanaryConfig
from serving.canary.error_counts import ErrorCounts
from serving.leader import Leadership
from serving.routing import RoutingStore
from streams import Bus

log = logging.getLogger(__name__)

OperatorAction = Literal["pause", "resume", "promote", "rollback"]
"""What an operator may do through the admin API (validated again at run time)."""


class CanaryController:
    def __init__(
        self,
        config: CanaryConfig,
        model: str,
        store: RoutingStore,
        bus: Bus,
        topics: Topics,
        error_counts: ErrorCounts | None = None,
        history: int = 500,
        leadership: Leadership | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.store = store
        self.topics = topics
        self._bus = bus
        self._producer = bus.producer()
        self._signals = SignalReader(bus, topics.engagement_signals)
        self._error_counts = error_counts
        self._lock = threading.RLock()
        self._exp: Experiment | None = None
        self._exp_token: int | None = None  # the lease under which _exp was read or written
        self.leadership = leadership
        self._last_hold_reason: str | None = None
        self.decisions: deque[CanaryDecision] = deque(maxlen=history)
        self.last_analysis: Analysis | None = None

    # -- reading engagement.signals ---------------------------------------------------
    def poll_signals(self, max_records: int = 10_000, timeout_s: float = 0.0) -> int:
        """Read whatever window aggregates are available; returns how many were taken."""
        with self._lock:
            return self._signals.poll(max_records, timeout_s)

    def add_aggregate(self, agg: ArmWindowAggregate) -> None:
        """Take one partial. A re-sent partial of the same window and partition replaces the earlier one."""
        with self._lock:
            self._signals.add(agg)

    @property
    def _aggs(self) -> dict[AggregateKey, ArmWindowAggregate]:
        return self._signals.aggregates

    @property
    def bad_signals(self) -> int:
        return self._signals.bad

    # -- leadership -------------------------------------------------------------------
    def is_leader(self) -> bool:
        return self.leadership is None or self.leadership.is_leader()

    def fencing_token(self) -> int:
        """The fencing token this replica writes with; NotLeaderError where it does not lead."""
        if self.leadership is None:
            return 0
        token = self.leadership.token()
        if token is None:
            leader = None
            with contextlib.suppress(FlywheelError):
                leader = self.leadership.leader()
            who = f"this replica ({self.leadership.holder}) does not lead {self.model}"
            raise NotLeaderError(f"{who}; the leader is {leader or 'not elected yet'}", leader=leader)
        with self._lock:
            if token != self._exp_token:
                self._exp = None  # a new lease: read the bookkeeping back, another leader may have moved it on
                self._exp_token = token
        return token

    def _refused(self, exc: StaleLeaderError) -> None:
        self._exp, self._exp_token = None, None
        m.STALE_WRITES.labels(self.model).inc()
        log.warning("%s: decision refused, %s", self.model, exc)

    # -- state ------------------------------------------------------------------------
    def state(self) -> DeploymentState | None:
        return self.store.get(self.model)

    def _require_state(self) -> DeploymentState:
        state = self.state()
        if state is None:
            raise DeploymentStateError(f"model {self.model!r} has no deployment yet")
        return state

    def bootstrap(self, version: str, now: datetime | None = None, actor: str = "hotswap") -> CanaryDecision:
        """First deployment: ``version`` becomes the baseline directly (there is nothing to compare it with)."""
        now = now or datetime.now(UTC)
        with self._lock:
            token = self.fencing_token()
            before = self.state()
            state = DeploymentState(
                model=self.model,
                baseline_version=version,
                candidate_version=None,
                share_bp=0,
                step_index=-1,
                status="idle",
                experiment_salt=uuid.uuid4().hex,
                updated_ts=now,
            )
            return self._commit(
                before,
                state,
                "promote",
                f"first deployment of {self.model}: {version} is the baseline",
                now,
                actor,
                token,
            )

    def start_canary(self, candidate: str, now: datetime | None = None, actor: str = "hotswap") -> CanaryDecision:
        """Open the canary for a loaded, health-checked ``candidate`` at the first step."""
        now = now or datetime.now(UTC)
        with self._lock:
            token = self.fencing_token()
            before = self._require_state()
            if before.candidate_version is not None:
                raise DeploymentStateError(f"{before.candidate_version} is already the candidate of {self.model}")
            share = self.config.steps_bp[0]
            state = before.model_copy(
                update={
                    "candidate_version": candidate,
                    "share_bp": share,
                    "step_index": 0,
                    "status": "canary",
                    "experiment_salt": uuid.uuid4().hex,
                    "updated_ts": now,
                }
            )
            self._exp = Experiment(candidate, now, now, errors_at_start=self._error_snapshot(state))
            return self._commit(
                before, state, "start", f"canary of {candidate} opened at {share / 100:g}%", now, actor, token
            )

    def reject(self, version: str, reason: str, now: datetime | None = None, actor: str = "hotswap") -> CanaryDecision:
        """Record that ``version`` will never get traffic (load or health check failed)."""
        now = now or datetime.now(UTC)
        with self._lock:
            token = self.fencing_token()
            before = self.state()
            decision = build_decision(
                self.model, before, before, "reject", reason, now, actor, candidate=version, token=token
            )
            self.store.claim(self.model, token)  # a fenced-out leader's reject is not published
            self._publish(None, decision)
            self.decisions.append(decision)
            m.DECISIONS.labels(self.model, "reject").inc()
            return decision

    # -- the analysis loop --------------------------------------------------------------
    def evaluate_once(self, now: datetime | None = None) -> CanaryDecision | None:
        """Poll signals, analyse, act. None when no canary is running (idle, paused, halted)."""
        now = now or datetime.now(UTC)
        with self._lock:
            if not self.is_leader():
                return None  # followers neither read signals nor decide
            try:
                token = self.fencing_token()
            except NotLeaderError:
                return None
            self.poll_signals()
            state = self.state()
            if (
                state is None
                or state.status != "canary"
                or state.candidate_version is None
                or state.baseline_version is None
            ):
                return None
            exp = self._experiment(state)
            base, cand, step_users, step_samples = self._totals(state, exp)
            analysis = analyse(base, cand, self.config, exp.p_min, step_users, state.share_bp)
            self.last_analysis = analysis
            action, reason = decide(analysis, self.config, state.step_index, step_samples)
            try:
                return self._apply(state, action, reason, now, "controller", token, analysis)
            except StaleLeaderError:
                return None  # counted and logged; the new leader decides

    def _experiment(self, state: DeploymentState) -> Experiment:
        if self._exp is None or self._exp.candidate != state.candidate_version:
            self._exp = stored_experiment(self.store, self.model, state.candidate_version)
        if self._exp is None:
            # No bookkeeping stored for this candidate (written before it was kept): resume from
            # the state, burn-in from its last change; running p-values start afresh (conservative).
            self._exp = Experiment(state.candidate_version or "", state.updated_ts, state.updated_ts)
        return self._exp

    def _totals(self, state: DeploymentState, exp: Experiment) -> tuple[ArmTotals, ArmTotals, tuple[int, int], int]:
        comparison = exp.compare(self._signals.values(), state, timedelta(seconds=self.config.burn_in_s))
        base, cand = comparison.baseline, comparison.candidate
        if self._error_counts is not None:
            for arm, totals, version in (
                ("baseline", base, state.baseline_version),
                ("candidate", cand, state.candidate_version),
            ):
                req, err = self._error_counts(arm, version or "")
                req0, err0 = exp.errors_at_start.get(arm, (0, 0))
                totals.requests, totals.errors = max(0, req - req0), max(0, err - err0)
        return base, cand, comparison.step_users, comparison.step_samples

    def _error_snapshot(self, state: DeploymentState) -> dict[str, tuple[int, int]]:
        if self._error_counts is None:
            return {}
        return {
            "baseline": self._error_counts("baseline", state.baseline_version or ""),
            "candidate": self._error_counts("candidate", state.candidate_version or ""),
        }

    # -- actions ------------------------------------------------------------------------
    def _apply(
        self,
        state: DeploymentState,
        action: CanaryAction,
        reason: str,
        now: datetime,
        actor: str,
        token: int,
        analysis: Analysis | None = None,
    ) -> CanaryDecision:
        update: dict[str, object] = {"updated_ts": now}
        if action == "advance":
            nxt = state.step_index + 1
            share = self.config.steps_bp[nxt] if nxt < len(self.config.steps_bp) else 10_000
            if share >= 10_000:
                action = "promote"
            else:
                update.update(step_index=nxt, share_bp=share)
                if self._exp is not None:
                    self._exp.new_step(now)
        if action == "promote":
            update.update(
                baseline_version=state.candidate_version,
                candidate_version=None,
                share_bp=0,
                step_index=-1,
                status="idle",
            )
        elif action == "rollback":
            update.update(candidate_version=None, share_bp=0, step_index=-1, status="idle")
        elif action == "halt":
            update.update(share_bp=0, status="halted")
        elif action == "pause":
            update.update(status="paused")
        elif action == "resume":
            share = self.config.steps_bp[max(state.step_index, 0)]
            update.update(status="canary", share_bp=share, step_index=max(state.step_index, 0))
            if self._exp is not None:
                self._exp.new_step(now)  # the SRM test and the burn-in restart with the share now in force
        if action == "hold":
            decision = build_decision(self.model, state, state, "hold", reason, now, actor, analysis, token=token)
            if self._exp is not None:
                try:  # the running p-values moved: the next leader must start from them
                    self.store.put_experiment(self.model, self._exp.to_json(), token)
                except StaleLeaderError as exc:
                    self._refused(exc)
                    raise
            if reason != self._last_hold_reason:  # don't flood the compacted topic with identical holds
                self._publish(None, decision)
            self._last_hold_reason = reason
            self.decisions.append(decision)
            m.DECISIONS.labels(self.model, "hold").inc()
            return decision
        self._last_hold_reason = None
        after = state.model_copy(update=update)
        if action in ("promote", "rollback"):
            self._exp = None
        return self._commit(state, after, action, reason, now, actor, token, analysis)

    def _commit(
        self,
        before: DeploymentState | None,
        after: DeploymentState,
        action: CanaryAction,
        reason: str,
        now: datetime,
        actor: str,
        token: int,
        analysis: Analysis | None = None,
    ) -> CanaryDecision:
        decision = build_decision(self.model, before, after, action, reason, now, actor, analysis, token=token)
        after = after.model_copy(update={"last_decision_id": decision.decision_id, "fencing_token": token})
        after = DeploymentState.model_validate(after.model_dump())  # re-validate the updated copy
        # The state and the experiment's bookkeeping change together, or not at all.
        experiment = self._exp.to_json() if self._exp is not None and after.candidate_version else None
        try:
            self.store.put(after, token, experiment)
        except StaleLeaderError as exc:
            self._refused(exc)
            raise
        self._publish(after, decision)
        self.decisions.append(decision)
        m.DECISIONS.labels(self.model, action).inc()
        m.CANARY_SHARE.labels(self.model).set(after.share_bp / 10_000)
        if action in ("promote", "rollback"):
            m.SWAPS.labels(self.model, "promoted" if action == "promote" else "rolled_back").inc()
        log.info("%s %s: %s (%s)", self.model, action, reason, actor)
        return decision

    def _publish(self, state: DeploymentState | None, decision: CanaryDecision) -> None:
        topic = self.topics.serving_deployments
        self._producer.produce(topic, decision.to_json_bytes(), key=deployment_record_key(decision))
        if state is not None:
            self._producer.produce(topic, state.to_json_bytes(), key=deployment_record_key(state))
        self._producer.flush(10.0)

    # -- operator actions (admin API) ----------------------------------------------------
    def operator_action(
        self, action: OperatorAction, actor: str, reason: str, now: datetime | None = None
    ) -> CanaryDecision:
        """pause | resume | promote | rollback, by an operator, recorded with who and why."""
        now = now or datetime.now(UTC)
        with self._lock:
            token = self.fencing_token()
            state = self._require_state()
            allowed = {
                "pause": state.status == "canary",
                "resume": state.status in ("paused", "halted"),
                "promote": state.candidate_version is not None,
                "rollback": state.candidate_version is not None,
            }
            if action not in allowed:
                raise DeploymentStateError(f"unknown action {action!r}; use pause, resume, promote or rollback")
            if not allowed[action]:
                raise DeploymentStateError(
                    f"cannot {action} {self.model}: status {state.status}, candidate {state.candidate_version}"
                )
            return self._apply(
                state,
                action,
                f"operator: {reason}",
                now,
                actor,
                token,
                self.last_analysis if action in ("promote", "rollback") else None,
            )

    def close(self) -> None:
        self._signals.close()
        self._producer.close()


def ensure_topics(bus: Bus, topics: Topics) -> None:
    """Create the two topics the controller needs (idempotent)."""
    wanted = {topics.engagement_signals, topics.serving_deployments}
    bus.create_topics(s for s in topics.specs() if s.name in wanted)
