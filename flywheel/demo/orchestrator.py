"""`flywheel demo`: run the loop for N generations, show progress, build the report.

The orchestrator only starts things and watches topics (as an operator would); every
decision is taken by the components themselves: the buffer asks for training, the
trainer worker trains and gates, the hot-swap controller loads, the canary promotes or
rolls back. The one deliberate intervention is the optional planted bad generation.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from flywheel.demo._assemble import Outcomes, build_report, online_metrics
from flywheel.demo._hack import HackedGeneration
from flywheel.demo._tracker import FINAL, Tracker, plant_due
from flywheel.demo._watch import StageCounter, TopicTail
from flywheel.demo.config import DemoConfig
from flywheel.demo.progress import Progress
from flywheel.demo.report import (
    DemoReport,
)
from flywheel.settings import FlywheelSettings
from schemas import (
    CheckpointManifest,
    DeploymentState,
    EvalReport,
    ResponseOutcome,
    deployment_record_adapter,
    engagement_signal_adapter,
)

if TYPE_CHECKING:  # the runtime imports serving and the trainers (torch): not at module level
    from flywheel.demo.runtime import DemoRuntime

log = logging.getLogger(__name__)


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
    tracker = Tracker(config.model, base_version)
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
    outcomes = Outcomes()
    worker = rt.start_trainer()
    rt.users.resume()
    progress.event(f"{config.simulator.users} simulated users start talking")
    last_rate = (time.monotonic(), 0)
    rate = 0.0
    jobs_before = _jobs_done()  # the worker's counter is process-wide
    last_hold: dict[str, str] = {}
    last_stage = ""
    hack: HackedGeneration | None = None
    try:
        while True:
            now_s = time.monotonic() - started
            for r in checkpoints.poll():
                g = tracker.on_manifest(CheckpointManifest.model_validate_json(r.value), now_s)
                if g is not None:
                    ev = g.manifest.eval
                    progress.event(
                        f"generation {g.number}: {g.manifest.version} ({g.manifest.job_kind}"
                        f"{', planted' if g.planted else ''}) offline IF "
                        f"{(ev.instruction_following if ev else 0):.1%}, violations {(ev.violation_rate if ev else 1):.1%}"
                        + (
                            f", RM win {ev.win_rate:.0%}"
                            if ev and ev.win_rate is not None
                            else ", no engagement model yet"
                        )
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
                if record.candidate_version in tracker.generations and record.action not in FINAL:
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
                        rt.stack.canary.operator_action(
                            "rollback", "flywheel demo", f"experiment halted: {record.reason}"
                        )
                if g is not None:
                    o = online_metrics(g.metrics, g.share_bp)
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
            if hack is not None and hack.error is not None:
                raise RuntimeError(f"the planted reward hack failed: {hack.error}")
            if plant_due(config.plant_hack_generation, tracker):
                tracker.planted_job = f"grpo-hack-{rt.run_id}"
                baseline = (tracker.state.baseline_version if tracker.state else None) or base_version
                hack = HackedGeneration(rt, baseline, tracker.planted_job).start()
                progress.event(
                    f"planting a reward hack as generation {config.plant_hack_generation}: GRPO from {baseline} "
                    "over-optimises a reward model that rewards emoji and stock questions"
                )
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
                busy = cand is not None or tracker.awaiting_canary(now_s) or (hack is not None and hack.running)
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
    return build_report(
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
