"""The trainer worker: trainer.jobs in, gated checkpoints out.

Per job: lease (Redis) → read the exact sample ranges → train → offline gate →
publish to the registry (atomic, idempotent version) → CheckpointManifest on
models.checkpoints → commit the job's offset → release the lease. A worker killed at
any point leaves the job uncommitted; another worker redoes it and, because the
version id comes from the job id and publishing is idempotent, exactly one version
results.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

from schemas import CheckpointManifest, FlywheelError, SchemaError, Topics, TrainJobRequest, parse_message
from streams import Bus, Consumer, Producer, Record, TopicPartition
from trainers.bootstrap.base_model import ensure_base_model
from trainers.registry.import_base import import_base
from trainers.registry.registry import Checkpoint, CheckpointRegistry, lora_base_of, version_for_job
from trainers.reward.reward_config import resolve_mode
from trainers.reward.scoring import RewardModel
from trainers.worker._inputs import latest_deployment, read_ranges, with_replay
from trainers.worker._jobs import gate_policy, gate_reward_model, train_job
from trainers.worker._progress import StepReporter
from trainers.worker._queue import JobQueue, Waiting
from trainers.worker.lease import LeaseKeeper, LeaseLostError, LeaseStore
from trainers.worker.worker_config import TrainerWorkerSettings

log = logging.getLogger(__name__)

Outcome = Literal["published", "rejected", "failed", "invalid", "skipped_leased", "already_published", "superseded"]

jobs_total = Counter("flywheel_trainers_jobs_total", "Training jobs by kind and outcome.", ["kind", "outcome"])
job_duration_seconds = Histogram(
    "flywheel_trainers_job_duration_seconds",
    "Wall time of a training job, read to publish.",
    ["kind"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
train_steps_per_second = Gauge(
    "flywheel_trainers_steps_per_second", "Optimiser steps per second of the latest job.", ["kind"]
)
train_loss = Gauge("flywheel_trainers_loss", "Latest training loss.", ["kind"])
eval_metric = Gauge(
    "flywheel_trainers_eval", "Offline-gate results of the latest checkpoint, by metric.", ["kind", "metric"]
)


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job record."""

    job_id: str | None
    outcome: Outcome
    manifest: CheckpointManifest | None = None
    error: str | None = None
    retry: bool = False
    """The job stays queued, uncommitted: its lease is another worker's, or was lost."""


class TrainerWorker:
    """Consume ``trainer.jobs`` in a consumer group and turn each job into one checkpoint.

    Use ``run_once()`` to process at most one job (the in-process demo steps it), or
    ``start()`` / ``stop()`` for a background loop.
    """

    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        settings: TrainerWorkerSettings,
        leases: LeaseStore,
        registry: CheckpointRegistry | None = None,
        worker_id: str | None = None,
        load_lock: threading.Lock | None = None,
        hold_after_publish: bool = False,
    ) -> None:
        """``load_lock``: held while a job loads, trains and evaluates models, for a process
        that also serves (the demo): transformers' ``from_pretrained`` patches process-wide
        state, so model loads in two threads must not overlap. ``hold_after_publish``: pause
        after each policy checkpoint it announces (published or rejected) until ``resume()``
        (whoever serves it decides when the next generation may be trained)."""
        self.bus = bus
        self.topics = topics
        self.settings = settings
        self.leases = leases
        self.registry = registry or CheckpointRegistry(settings.registry)
        self.worker_id = worker_id or f"trainer-{uuid.uuid4().hex[:8]}"
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._load_lock = load_lock
        self._hold_after_publish = hold_after_publish
        self._queue = JobQueue(self._lane)
        self._committed: dict[TopicPartition, int] = {}

    # -- lifecycle ---------------------------------------------------------------
    def _ensure_clients(self) -> tuple[Consumer, Producer]:
        if self._consumer is None or self._producer is None:
            s = self.settings
            self._consumer = self.bus.consumer(
                s.group_id,
                **{"session.timeout.ms": s.session_timeout_ms, "max.poll.interval.ms": s.max_poll_interval_ms},
            )
            self._consumer.subscribe([self.topics.trainer_jobs])
            self._producer = self.bus.producer()
        return self._consumer, self._producer

    def start(self) -> None:
        """Process jobs on a background thread until ``stop()``."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self.worker_id, daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Take no new job until ``resume()`` (a job under way finishes). For a machine that
        cannot train and serve at once; a long pause on Kafka outlives max.poll.interval.ms and
        hands the partitions to other workers, which is what should happen."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def _lane(self, job: TrainJobRequest) -> str:
        """Jobs that supersede each other: every policy recipe is one lane (each trains the
        next generation); each reward model is its own."""
        return self._reward_model_name(job) if job.kind == "reward" else f"policy:{job.model}"

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if self._paused.is_set():
                self._stopping.wait(0.2)
                continue
            try:
                self.run_once(timeout_s=1.0)
            except Exception:  # never let one bad job kill the worker; the job is redone
                log.exception("trainer worker %s: job failed", self.worker_id)
                time.sleep(self.settings.retry_backoff_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def __enter__(self) -> TrainerWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- one job -----------------------------------------------------------------
    def run_once(self, timeout_s: float = 1.0) -> JobOutcome | None:
        """Read every job waiting in ``trainer.jobs`` (up to ``timeout_s`` for the first when
        none is queued), drop the superseded ones and process the next (see ``_queue``).
        Returns its outcome, the last unreadable or superseded record's when there is no job
        to take, or None if nothing came."""
        consumer, producer = self._ensure_clients()
        wait = 0.0 if len(self._queue) else timeout_s
        outcome: JobOutcome | None = None
        while records := consumer.consume(self.settings.read_batch, wait):
            for record in records:
                outcome = self._read(record) or outcome
            wait = 0.0
        for stale in self._queue.supersede():
            log.info(
                "job %s (%s, created %s) superseded by a newer one", stale.job.job_id, stale.lane, stale.job.created_ts
            )
            jobs_total.labels(stale.job.kind, "superseded").inc()
            outcome = JobOutcome(stale.job.job_id, "superseded")
        taken = self._queue.next()
        if taken is not None:
            outcome = self._handle(taken, producer)
            if outcome.retry:
                time.sleep(self.settings.retry_backoff_s)
            else:
                self._queue.done(taken)
        self._commit(consumer)
        return outcome

    def _read(self, record: Record) -> JobOutcome | None:
        try:
            job = parse_message(TrainJobRequest, record.value)
        except SchemaError as exc:
            log.warning("trainer.jobs %s/%d: unreadable job skipped: %s", record.topic, record.offset, exc)
            jobs_total.labels("unknown", "invalid").inc()
            self._queue.read(record, None)
            return JobOutcome(None, "invalid", error=str(exc))
        self._queue.read(record, job)
        return None

    def _commit(self, consumer: Consumer) -> None:
        due = {tp: o for tp, o in self._queue.committable().items() if self._committed.get(tp) != o}
        if due:
            consumer.commit(due)
            self._committed |= due

    def _handle(self, taken: Waiting, producer: Producer) -> JobOutcome:
        job = taken.job
        s = self.settings
        if not self.leases.acquire(job.job_id, self.worker_id, s.lease_ttl_s):
            jobs_total.labels(job.kind, "skipped_leased").inc()
            return JobOutcome(job.job_id, "skipped_leased", retry=True)
        started = time.monotonic()
        try:
            with LeaseKeeper(self.leases, job.job_id, self.worker_id, s.lease_ttl_s, s.lease_renew_s) as keeper:
                manifest, outcome = self._process(job, keeper)
                if keeper.lost.is_set():
                    raise LeaseLostError(f"lease of job {job.job_id} lost before publishing")
                producer.produce(self.topics.models_checkpoints, manifest.to_json_bytes(), key=manifest.version)
                producer.flush()
            if self._hold_after_publish and job.kind != "reward":
                # Rejected ones too: whoever holds the worker sees every generation before the next.
                self._paused.set()
        except LeaseLostError as exc:
            jobs_total.labels(job.kind, "failed").inc()
            return JobOutcome(job.job_id, "failed", error=str(exc), retry=True)
        except FlywheelError as exc:
            # A job that cannot succeed (data deleted, nothing to train on): record and move on.
            log.error("job %s failed: %s", job.job_id, exc)
            jobs_total.labels(job.kind, "failed").inc()
            self.leases.release(job.job_id, self.worker_id)
            return JobOutcome(job.job_id, "failed", error=str(exc))
        self.leases.release(job.job_id, self.worker_id)
        job_duration_seconds.labels(job.kind).observe(time.monotonic() - started)
        jobs_total.labels(job.kind, outcome).inc()
        return JobOutcome(job.job_id, outcome, manifest)

    def _process(self, job: TrainJobRequest, keeper: LeaseKeeper) -> tuple[CheckpointManifest, Outcome]:
        s = self.settings
        is_reward = job.kind == "reward"
        model_name = self._reward_model_name(job) if is_reward else job.model
        version = version_for_job(job.job_id)
        if self.registry.exists(model_name, version):
            # A retry after a crash between publish and commit: re-announce, do not retrain.
            return self.registry.open(model_name, version).manifest, "already_published"
        start = self._resolve_base(job)
        base_version, base_dir = start.manifest.version, start.path
        share = s.reward_replay_share if is_reward else s.replay_share
        ranges = with_replay(self.bus, job.inputs, share, s.replay_max_samples)
        inputs = read_ranges(self.bus, ranges, s.read_timeout_s)
        out_dir = s.work_dir / f"{version}-{self.worker_id}"
        shutil.rmtree(out_dir, ignore_errors=True)
        reporter = StepReporter(job.kind, f"{job.kind} {version}", keeper)
        try:
            with self._load_lock or contextlib.nullcontext():
                rm_version, reward_model = self._latest_reward_model(job.model)
                output = train_job(job, inputs, base_dir, out_dir, s, reward_model, reporter)
                report = (
                    gate_reward_model(out_dir, s, output.held_out)
                    if is_reward
                    else gate_policy(out_dir, base_dir, base_version, s, reward_model, self._anchor(job, base_version))
                )
            reporter.close()
            result = output.result
            train_steps_per_second.labels(job.kind).set(result.steps_per_s)
            if result.final_loss is not None:
                train_loss.labels(job.kind).set(result.final_loss)
            if keeper.lost.is_set():
                raise LeaseLostError(f"lease of job {job.job_id} lost during training")
            for metric in ("instruction_following", "violation_rate", "reward_score", "win_rate"):
                value = getattr(report, metric)
                if value is not None:
                    eval_metric.labels(job.kind, metric).set(value)
            status: Literal["published", "rejected"] = "published" if report.passed else "rejected"
            training: dict[str, str | int | float | bool | None] = {
                "steps": result.steps,
                "train_s": round(result.train_s, 3),
                "final_loss": result.final_loss,
                "base_dir": str(base_dir),
                "invalid_samples": inputs.invalid,
                "samples": len(inputs),
                "reward_model": rm_version,  # the engagement model that ranked, rewarded and gated it
                "replayed_records": sum(r.count for r in ranges) - sum(r.count for r in job.inputs),
                **{f"metric.{k}": v for k, v in result.metrics.items()},
                **{f"config.{k}": v for k, v in _flat(output.settings.model_dump()).items()},
            }
            manifest = CheckpointManifest(
                model=model_name,
                version=version,
                parent=None if is_reward else base_version,
                kind=result.kind,
                lora_base=None if is_reward else lora_base_of(start.manifest, result.kind),
                job_id=job.job_id,
                job_kind=job.kind,
                training=training,
                lineage=ranges,  # the job's ranges and the replay before them: exactly what was read
                eval=report,
                status=status,
                created_ts=datetime.now(UTC),
            )
            if keeper.lost.is_set():
                raise LeaseLostError(f"lease of job {job.job_id} lost before publishing")
            published = self.registry.publish(out_dir, manifest)
        finally:
            reporter.close()
            shutil.rmtree(out_dir, ignore_errors=True)
        return published.manifest, status

    def _resolve_base(self, job: TrainJobRequest) -> Checkpoint:
        """The checkpoint to start from: the job's, else the serving baseline (latest
        DeploymentState), else the base model (registered as ``base``)."""
        version = job.base_version
        if version is None:
            state = latest_deployment(self.bus, self.topics.serving_deployments, job.model)
            version = state.baseline_version if state is not None else None
        if version is None or version == self.settings.base_version:
            return self.ensure_base(job.model)
        return self.registry.open(job.model, version)

    def _anchor(self, job: TrainJobRequest, baseline_version: str) -> tuple[str, Path] | None:
        """The lineage's base model, which the gate also compares with (None when it is the baseline)."""
        if baseline_version == self.settings.base_version:
            return None
        return self.settings.base_version, self.ensure_base(job.model).path

    def ensure_base(self, model: str) -> Checkpoint:
        """The base model (imported from ``base_dir``, or the bootstrap model), published once
        as ``<model>/base`` (idempotent)."""
        return register_base_model(self.registry, model, self.settings)

    def _reward_model_name(self, job: TrainJobRequest) -> str:
        """Engagement model from samples.reward, Bradley–Terry model from samples.preference."""
        names_reward = any(r.topic == self.topics.samples_reward for r in job.inputs)
        mode = resolve_mode(self.settings.reward.with_overrides(job.config).mode, names_reward)
        s = self.settings
        return job.model + (s.reward_model_suffix if mode == "pointwise" else s.preference_model_suffix)

    def _latest_reward_model(self, model: str) -> tuple[str | None, RewardModel | None]:
        """The newest engagement model that passed its own check (version and model), if any."""
        published = [
            m for m in self.registry.list(model + self.settings.reward_model_suffix) if m.status == "published"
        ]
        if not published:
            return None, None
        latest = published[-1]
        return latest.version, RewardModel.load(self.registry.open(latest.model, latest.version).path)


def register_base_model(registry: CheckpointRegistry, model: str, settings: TrainerWorkerSettings) -> Checkpoint:
    """Publish the base model as ``<model>/<base_version>``: the folder ``settings.base_dir``
    (the base vLLM serves) when set, else the bootstrap model, built or reused."""
    if settings.base_dir is not None:
        return import_base(registry, settings.base_dir, model, settings.base_version)
    if registry.exists(model, settings.base_version):
        return registry.open(model, settings.base_version)
    path = ensure_base_model(settings.bootstrap)
    manifest = CheckpointManifest(
        model=model,
        version=settings.base_version,
        parent=None,
        kind="full",
        job_id=f"bootstrap:{path.name}",
        training={"source": "bootstrap", "build": path.name},
        status="published",
        created_ts=datetime.now(UTC),
    )
    return registry.publish(path, manifest)


def _flat(d: dict[str, object], prefix: str = "") -> dict[str, str | int | float | bool | None]:
    out: dict[str, str | int | float | bool | None] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flat(v, key + ".")
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
        else:
            out[key] = str(v)
    return out
