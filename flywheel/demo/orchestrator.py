"""`flywheel demo`: run the loop for N generations, show progress, build the report.

The orchestrator only starts things and watches topics (as an operator would); every
decision is taken by the components themselves: the buffer asks for training, the
trainer worker trains and gates, the hot-swap controller loads, the canary promotes or
rolls back. The one deliberate intervention is the optional planted bad generation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flywheel.demo._watch import StageCounter, TopicTail
from flywheel.demo.config import DemoConfig
from flywheel.demo.prediction import PredictionCheck
from flywheel.demo.progress import Progress
from flywheel.demo.report import (
    Decision,
    DemoReport,
    GenerationResult,
    HeldOutMetrics,
    OfflineMetrics,
    OnlineMetrics,
    VersionTraffic,
    prediction_points,
)
from flywheel.settings import FlywheelSettings
from schemas import (
    CanaryDecision,
    CheckpointManifest,
    DeploymentState,
    EvalReport,
    MetricResult,
    ResponseOutcome,
    deployment_record_adapter,
    engagement_signal_adapter,
)

if TYPE_CHECKING:  # the runtime imports serving and the trainers (torch): not at module level
    from flywheel.demo.runtime import DemoRuntime
    from flywheel.sim import SimStats

log = logging.getLogger(__name__)

_POLICY_JOB_KINDS = frozenset({"sft", "dpo", "grpo"})
_FINAL: dict[str, Decision] = {"promote": "promoted", "rollback": "rolled_back", "reject": "rejected"}


@dataclass
class _Generation:
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


@dataclass
class _Outcomes:
    """Per model version: responses and continued ones, from engagement.signals."""

    responses: dict[str, int] = field(default_factory=dict)
    continued: dict[str, int] = field(default_factory=dict)

    def add(self, o: ResponseOutcome) -> None:
        self.responses[o.model_version] = self.responses.get(o.model_version, 0) + 1
        self.continued[o.model_version] = self.continued.get(o.model_version, 0) + int(o.continued)


def _quiet_libraries() -> None:
    """Keep the terminal for the progress line: transformers' load reports and trl's
    per-run notices are not news in a demo."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # datasets only comes with the trainers
        pass
    warnings.filterwarnings("ignore", module="trl")
    warnings.filterwarnings("ignore", module="transformers")


def _jobs_done() -> int:
    """Training jobs the worker has finished (any outcome but a lease held elsewhere), from
    its metrics in this process."""
    from prometheus_client import REGISTRY

    done = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "flywheel_trainers_jobs":
            done += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("outcome") != "skipped_leased"
            )
    return int(done)


def _offline(report: EvalReport | None) -> OfflineMetrics:
    if report is None:
        return OfflineMetrics(
            instruction_following=0.0,
            violation_rate=1.0,
            rm_win_rate=None,
            passed=False,
            reasons=("no evaluation in the manifest",),
        )
    return OfflineMetrics(
        instruction_following=report.instruction_following,
        violation_rate=report.violation_rate,
        rm_win_rate=report.win_rate,
        rm_predicted_lift=report.rm_predicted_lift,
        rm_predicted_lift_ci_low=report.rm_predicted_lift_ci_low,
        rm_predicted_lift_ci_high=report.rm_predicted_lift_ci_high,
        passed=report.passed,
        reasons=report.reasons,
        flags=report.flags,
    )


def _online(metrics: tuple[MetricResult, ...], share_bp: int) -> OnlineMetrics:
    from serving.canary import lift_summary

    if not metrics:
        return OnlineMetrics(max_share_bp=share_bp)
    s = lift_summary(metrics)
    by_name = {m.name: m for m in metrics}
    cr = by_name.get("continue_rate")
    return OnlineMetrics(
        continue_rate_lift=s["continue_rate_lift"],
        ci_low=s["ci_low"],
        ci_high=s["ci_high"],
        p_value=s.get("continue_rate_p_value"),
        depth_lift=s["depth_lift"],
        breadth_lift=s["breadth_lift"],
        continue_rate_baseline=cr.baseline if cr else None,
        continue_rate_candidate=cr.candidate if cr else None,
        n_baseline=int(s["n_baseline"] or 0),
        n_candidate=int(s["n_candidate"] or 0),
        max_share_bp=share_bp,
    )


def compare_versions(outcomes: _Outcomes, base: str, final: str, alpha: float, mde: float) -> OnlineMetrics:
    """Continue rate of ``final`` vs ``base`` replies with the canary's always-valid interval."""
    from serving.canary import stats

    nb, nc = outcomes.responses.get(base, 0), outcomes.responses.get(final, 0)
    if not nb or not nc or base == final:
        return OnlineMetrics(n_baseline=nb, n_candidate=nc)
    pb, pc = outcomes.continued[base] / nb, outcomes.continued[final] / nc
    var = float(stats.bernoulli_diff_var(pb, nb, pc, nc))
    tau2 = stats.tau2_for_mde(mde)
    half = float(stats.confidence_halfwidth(var, tau2, alpha))
    lift = pc - pb
    return OnlineMetrics(
        continue_rate_lift=lift,
        ci_low=lift - half,
        ci_high=lift + half,
        p_value=float(stats.msprt_p_value(lift, var, tau2)),
        continue_rate_baseline=pb,
        continue_rate_candidate=pc,
        n_baseline=nb,
        n_candidate=nc,
    )


def plant_due(generation: int | None, tracker: _Tracker) -> bool:
    """Queue the planted job now: generation ``generation`` is planted, and exactly the
    generations before it exist, every one decided (so the next to train is the Nth)."""
    return (
        generation is not None
        and tracker.planted_job is None
        and len(tracker.generations) == generation - 1
        and len(tracker.decided()) == len(tracker.generations)
    )


class _Tracker:
    """Generations as the topics tell them: manifests, then canary decisions."""

    def __init__(self, model: str, base_version: str) -> None:
        self.model = model
        self.base_version = base_version
        self.generations: dict[str, _Generation] = {}
        self.state: DeploymentState | None = None
        self.planted_job: str | None = None
        self.reward_models = 0

    def on_manifest(self, m: CheckpointManifest, now_s: float) -> _Generation | None:
        if m.version == self.base_version or m.version in self.generations:
            return None
        if m.model != self.model or (m.job_kind is not None and m.job_kind not in _POLICY_JOB_KINDS):
            self.reward_models += 1
            return None
        g = _Generation(
            len(self.generations) + 1, m, planted=m.job_id is not None and m.job_id == self.planted_job, seen_s=now_s
        )
        self.generations[m.version] = g
        if m.status != "published" or m.eval is None or not m.eval.passed:
            g.decision, g.decided_s = "rejected", now_s
            g.reason = "offline gate: " + "; ".join(m.eval.reasons if m.eval else ("no evaluation",))
        return g

    def on_decision(self, d: CanaryDecision, now_s: float) -> _Generation | None:
        g = self.generations.get(d.candidate_version or "")
        if g is None or g.decision is not None:
            return None
        if d.metrics:
            g.metrics = d.metrics
        if g.canary_started_s is None:
            g.canary_started_s = now_s
        g.share_bp = max(g.share_bp, d.share_bp_after, d.share_bp_before)
        if d.action in _FINAL:
            g.decision, g.reason, g.decided_s = _FINAL[d.action], d.reason, now_s
            return g
        return None

    def decided(self) -> list[_Generation]:
        return [g for g in self.generations.values() if g.decision is not None]

    def awaiting_canary(self, now_s: float, within_s: float = 30.0) -> bool:
        """A generation passed the gate in the last ``within_s`` and has no decision yet:
        the hot-swap controller is loading it."""
        return any(g.decision is None and now_s - g.seen_s < within_s for g in self.generations.values())

    def in_canary(self) -> _Generation | None:
        s = self.state
        if s is None or s.candidate_version is None:
            return None
        return self.generations.get(s.candidate_version)


def run_demo(
    settings: FlywheelSettings, config: DemoConfig | None = None, kafka: bool = False, progress: Progress | None = None
) -> DemoReport:
    """Run the closed loop; return the report (also written to ``config.report_dir``)."""
    from flywheel.demo import _trainers
    from flywheel.demo._oracle import oracle_step_s, with_oracle
    from flywheel.demo.report import render_table, write_report
    from flywheel.demo.runtime import DemoRuntime

    config = config or settings.demo
    progress = progress or Progress()
    _quiet_libraries()
    started = time.monotonic()
    progress.event("base model: building (first run, about a minute) or loading the cached tiny model")
    base_dir = _trainers.base_model_dir()
    runtime = DemoRuntime(settings, config, base_dir, kafka=kafka)
    progress.event(f"starting the platform on the {'Kafka' if kafka else 'embedded'} bus")
    runtime.start()
    try:
        base_version, base_eval = runtime.bootstrap_base(progress)
        progress.event(
            f"gateway {runtime.url} serves {config.model}@{base_version}; held-out IF "
            f"{base_eval.instruction_following:.1%}, violations {base_eval.violation_rate:.1%}"
        )
        # The report's oracle step runs after the loop: leave it its time inside the budget.
        budget_s = config.max_wall_s - oracle_step_s(base_dir, config.simulator.max_tokens)
        report = _loop(runtime, config, progress, started, base_version, base_eval, budget_s)
        progress.status(stage="oracle")
        runtime.users.pause()
        report = with_oracle(runtime, report).model_copy(update={"reward_models": _trainers.reward_models(runtime)})
        # The run's registry is scratch space; the model it ends with is worth keeping.
        final_model = _trainers.export_model(runtime, report.final_version, config.report_dir / "final-model")
        progress.event(f"final model {report.final_version} saved to {final_model}")
    finally:
        progress.status(stage="stopping")
        runtime.stop()
        progress.close()
    json_path, png_path = write_report(report, config.report_dir)
    print(render_table(report))
    print(f"report: {json_path} {png_path}")
    return report


def _loop(
    rt: DemoRuntime,
    config: DemoConfig,
    progress: Progress,
    started: float,
    base_version: str,
    base_eval: EvalReport,
    budget_s: float,
) -> DemoReport:
    from flywheel.demo import _trainers

    topics = rt.topics
    bus = rt.bus
    tracker = _Tracker(config.model, base_version)
    checkpoints = TopicTail(bus, topics.models_checkpoints)
    deployments = TopicTail(bus, topics.serving_deployments)
    signals = TopicTail(bus, topics.engagement_signals)
    stages = StageCounter(
        bus,
        {
            "chat.events": topics.chat_events,
            "samples.reward": topics.samples_reward,
            "samples.sft": topics.samples_sft,
            "samples.preference": topics.samples_preference,
            "trainer.jobs": topics.trainer_jobs,
        },
    )
    outcomes = _Outcomes()
    worker = rt.start_trainer()
    rt.users.resume()
    progress.event(f"{config.simulator.users} simulated users start talking")
    last_rate = (time.monotonic(), 0)
    rate = 0.0
    jobs_before = _jobs_done()  # the worker's counter is process-wide
    last_hold: dict[str, str] = {}
    last_stage = ""
    try:
        while True:
            now_s = time.monotonic() - started
            for r in checkpoints.poll():
                g = tracker.on_manifest(CheckpointManifest.model_validate_json(r.value), now_s)
                if g is not None:
                    ev = g.manifest.eval
                    progress.event(
                        f"generation {g.number}: {g.manifest.version} ({g.manifest.job_kind}"
                        f"{', planted bad' if g.planted else ''}) offline IF "
                        f"{(ev.instruction_following if ev else 0):.1%}, violations {(ev.violation_rate if ev else 1):.1%}, "
                        f"RM win {(ev.win_rate if ev and ev.win_rate is not None else float('nan')):.0%}"
                        + (
                            f", RM predicted lift {100 * ev.rm_predicted_lift:+.1f} pp"
                            if ev and ev.rm_predicted_lift is not None
                            else ""
                        )
                        + (f" → rejected by the gate: {g.reason}" if g.decision else " → gate passed")
                    )
            for r in deployments.poll():
                record = deployment_record_adapter.validate_json(r.value)
                if isinstance(record, DeploymentState):
                    tracker.state = record
                    continue
                g = tracker.on_decision(record, now_s)
                if record.candidate_version in tracker.generations and record.action not in _FINAL:
                    if record.action == "hold":
                        if record.reason.split(":")[0] != last_hold.get(record.candidate_version):
                            progress.event(
                                f"canary {record.candidate_version}: hold at {record.share_bp_after / 100:g}% ({record.reason})"
                            )
                        last_hold[record.candidate_version] = record.reason.split(":")[0]
                    else:
                        progress.event(
                            f"canary {record.candidate_version}: {record.action} → {record.share_bp_after / 100:g}% "
                            f"of users ({record.reason})"
                        )
                    if record.action == "halt":
                        # An operator's move: a halted experiment is not trusted; take the candidate out.
                        rt.canary.operator_action("rollback", "flywheel demo", f"experiment halted: {record.reason}")
                if g is not None:
                    o = _online(g.metrics, g.share_bp)
                    lift = (
                        ""
                        if o.continue_rate_lift is None
                        else (
                            f" (continue lift {100 * o.continue_rate_lift:+.1f} pp, CI [{100 * (o.ci_low or 0):+.1f}, {100 * (o.ci_high or 0):+.1f}])"
                        )
                    )
                    assert g.decision is not None  # on_decision returns a generation once it is decided
                    progress.event(f"generation {g.number}: {g.decision.replace('_', ' ')}{lift}: {g.reason}")
            for r in signals.poll():
                sig = engagement_signal_adapter.validate_json(r.value)
                if isinstance(sig, ResponseOutcome):
                    outcomes.add(sig)
            counts = stages.poll()
            decided = tracker.decided()
            if plant_due(config.plant_bad_generation, tracker):
                # The worker holds after every generation, so nothing trains between here and
                # resume(); the planted job has priority, and the policy jobs queued meanwhile
                # are older than it and superseded, so it is exactly generation N.
                tracker.planted_job = _trainers.plant_bad_job(rt)
                progress.event(
                    f"planting a bad generation {config.plant_bad_generation}: job {tracker.planted_job} trains on "
                    "corrupted preferences (older queued policy jobs are superseded)"
                )
            if len(decided) >= config.generations:
                break
            if now_s > budget_s:
                progress.event(f"stopping: the loop's wall-time budget {budget_s:.0f}s spent")
                break
            if rt.users.error is not None:
                raise RuntimeError(f"simulated users failed: {rt.users.error}")
            requests = rt.simulator.stats.requests
            t, n = last_rate
            if time.monotonic() - t >= 5:
                rate = (requests - n) / (time.monotonic() - t)
                last_rate = (time.monotonic(), requests)
            cand = tracker.in_canary()
            training = counts["trainer.jobs"] > _jobs_done() - jobs_before
            stage = (
                f"canary {cand.manifest.version} {tracker.state.share_bp / 100:g}%"
                if cand and tracker.state
                else "training"
                if training
                else "collecting samples"
            )
            if stage != last_stage and not stage.startswith("canary"):
                progress.event(
                    f"stage: {stage} (jobs requested {counts['trainer.jobs']}, samples sft "
                    f"{counts['samples.sft']}, preference {counts['samples.preference']}, reward {counts['samples.reward']})"
                )
            last_stage = stage
            if config.pause_training_during_canary:
                busy = cand is not None or tracker.awaiting_canary(now_s)
                if busy != worker.paused:
                    worker.pause() if busy else worker.resume()
            if config.pause_traffic_while_training and training and cand is None:
                if rt.users.running:
                    rt.users.pause(timeout_s=0.0)
            elif not rt.users.running:
                rt.users.resume()
            progress.status(
                gen=f"{len(decided) + (1 if cand or stage == 'training' else 0)}/{config.generations}",
                stage=stage,
                day=rt.simulator.day + 1,
                requests=f"{requests} ({rate:.0f}/s)",
                samples=f"sft {counts['samples.sft']} pref {counts['samples.preference']} rm {counts['samples.reward']}",
                jobs=counts["trainer.jobs"],
            )
            time.sleep(0.25)
    finally:
        rt.users.pause()
    wall_s = time.monotonic() - started
    for r in signals.poll():
        sig = engagement_signal_adapter.validate_json(r.value)
        if isinstance(sig, ResponseOutcome):
            outcomes.add(sig)
    return _build_report(
        tracker,
        outcomes,
        stages.poll(),
        base_version,
        base_eval,
        config,
        wall_s,
        rt.simulator.stats,
        checkpoints.count,
        deployments.count,
        signals.count,
    )


def _build_report(
    tracker: _Tracker,
    outcomes: _Outcomes,
    counts: dict[str, int],
    base_version: str,
    base_eval: EvalReport,
    config: DemoConfig,
    wall_s: float,
    sim_stats: SimStats,
    n_checkpoints: int,
    n_deployments: int,
    n_signals: int,
) -> DemoReport:
    gens = sorted(tracker.generations.values(), key=lambda g: g.number)
    first_eval = gens[0].manifest.eval if gens else None
    base = HeldOutMetrics(
        instruction_following=first_eval.baseline_instruction_following
        if first_eval and first_eval.baseline_instruction_following is not None
        else base_eval.instruction_following,
        violation_rate=first_eval.baseline_violation_rate
        if first_eval and first_eval.baseline_violation_rate is not None
        else base_eval.violation_rate,
    )
    results = []
    for g in gens:
        results.append(
            GenerationResult(
                generation=g.number,
                version=g.manifest.version,
                parent=g.manifest.parent,
                job_kind=g.manifest.job_kind,
                planted_bad=g.planted,
                training={
                    k.removeprefix("metric."): float(v)
                    for k, v in g.manifest.training.items()
                    if k.startswith("metric.") and isinstance(v, int | float) and not isinstance(v, bool)
                },
                reward_model=rm if isinstance(rm := g.manifest.training.get("reward_model"), str) else None,
                offline=_offline(g.manifest.eval),
                decision=g.decision or "undecided",
                decision_reason=g.reason,
                online=_online(g.metrics, g.share_bp),
                wall_s=round((g.decided_s or wall_s) - g.seen_s, 1),
                canary_s=round((g.decided_s or wall_s) - g.canary_started_s, 1)
                if g.canary_started_s is not None and g.decision != "rejected"
                else None,
            )
        )
    promoted = [r for r in results if r.decision == "promoted"]
    final_version = promoted[-1].version if promoted else base_version
    final = (
        HeldOutMetrics(
            instruction_following=promoted[-1].offline.instruction_following,
            violation_rate=promoted[-1].offline.violation_rate,
        )
        if promoted
        else base
    )
    traffic = tuple(
        VersionTraffic(
            version=v,
            replies=s.replies,
            continue_rate=round(s.continue_rate, 4),
            instruction_following=round(s.instruction_following_rate, 4),
            violation_rate=round(s.violation_rate, 4),
            mean_depth=round(s.mean_depth, 3),
        )
        for v, s in sorted(sim_stats.by_version.items())
    )
    return DemoReport(
        recipe=config.policy_recipe,
        engine=config.engine,
        base_version=base_version,
        base=base,
        final_version=final_version,
        final=final,
        generations=tuple(results),
        final_vs_base=compare_versions(
            outcomes, base_version, final_version, alpha=0.05, mde=config.canary_mde_continue_rate
        ),
        prediction=PredictionCheck.of(prediction_points(tuple(results))),
        traffic=traffic,
        stages={
            **counts,
            "engagement.signals": n_signals,
            "models.checkpoints": n_checkpoints,
            "serving.deployments": n_deployments,
        },
        wall_s=round(wall_s, 1),
        settings=config.model_dump(mode="json"),
    )
