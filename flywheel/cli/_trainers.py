"""`flywheel trainers run|bootstrap` and `flywheel registry list|import-base`."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from flywheel.settings import FlywheelSettings
from flywheel.wiring import make_bus, make_worker
from schemas import FlywheelError

log = logging.getLogger(__name__)

trainers_app = typer.Typer(
    help="Trainer workers: turn trainer.jobs into gated, published checkpoints.", no_args_is_help=True
)
registry_app = typer.Typer(
    help="The checkpoint registry: published, rejected and retired versions.", no_args_is_help=True
)


@trainers_app.command("run")
def trainers_run(
    ctx: typer.Context,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", help="Exit after this many jobs (default: run until stopped).")
    ] = None,
    idle_exit_s: Annotated[
        float | None, typer.Option("--idle-exit-s", help="Exit after this many seconds without a job.")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Name of this worker in leases and logs (default: random).")
    ] = None,
) -> None:
    """Train, gate and publish one checkpoint per job on trainer.jobs.

    For each job (consumer group): take a lease in Redis, read exactly the job's sample
    ranges, train, run the offline gate, publish the checkpoint to the registry and its
    manifest to models.checkpoints, then commit. A worker killed at any point leaves its job to another worker; exactly one
    checkpoint version results. SIGTERM / Ctrl-C stop after the current job.
    """
    from prometheus_client import start_http_server

    from trainers.worker import RedisLeaseStore

    settings: FlywheelSettings = ctx.obj
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    leases = RedisLeaseStore(settings.redis_url, settings.trainers.lease_prefix)
    worker = make_worker(settings, make_bus(settings), settings.topics, leases, worker_id=worker_id)
    stopping = False

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    done = 0
    last_job = time.monotonic()
    typer.echo(f"trainer worker {worker.worker_id}: waiting for jobs on {settings.topics.trainer_jobs}", err=True)
    try:
        while not stopping:
            try:
                outcome = worker.run_once(timeout_s=1.0)
            except Exception:  # e.g. the commit failed after a rebalance: the job is redone, the worker lives on
                log.exception("trainer worker %s: job not completed; it will be redelivered", worker.worker_id)
                time.sleep(settings.trainers.retry_backoff_s)
                continue
            if outcome is None or outcome.outcome == "skipped_leased":
                if idle_exit_s is not None and time.monotonic() - last_job > idle_exit_s:
                    break
                continue
            last_job = time.monotonic()
            done += 1
            m = outcome.manifest
            detail = f" {m.model}/{m.version}" if m is not None else f" ({outcome.error})"
            if m is not None and m.eval is not None:
                detail += f" IF {m.eval.instruction_following:.3f} violations {m.eval.violation_rate:.3f}"
            typer.echo(f"job {outcome.job_id}: {outcome.outcome}{detail}")
            if max_jobs is not None and done >= max_jobs:
                break
    finally:
        worker.stop()
        leases.close()


@trainers_app.command("bootstrap")
def trainers_bootstrap(
    ctx: typer.Context,
    evaluate: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="Also measure it on the held-out prompts.")
    ] = True,
    path_only: Annotated[
        bool,
        typer.Option(
            "--path-only",
            help="Print only the folder (for scripts: deploy/local/vllm.sh start <folder>); no evaluation.",
        ),
    ] = False,
) -> None:
    """Build (or reuse) the tiny local base model and print its folder.

    A byte-level BPE tokenizer and a small Llama trained on the synthetic corpus, no model
    hub; cached by content hash. It loads with from_pretrained(folder)."""
    from trainers.bootstrap.base_model import ensure_base_model
    from trainers.evaluate import OfflineGate

    settings: FlywheelSettings = ctx.obj
    started = time.monotonic()
    path = ensure_base_model(settings.trainers.bootstrap)
    if path_only:
        typer.echo(str(path))
        return
    typer.echo(f"base model: {path} ({time.monotonic() - started:.1f}s)")
    if evaluate:
        stats = OfflineGate(settings.trainers.gate).stats_of(path)
        typer.echo(
            f"held-out instruction following {stats.instruction_following:.3f}, "
            f"violations {stats.violation_rate:.3f}, mean words {stats.mean_words:.1f}"
        )


@registry_app.command("list")
def registry_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model (default: all).")] = None,
) -> None:
    """Every version in the registry, oldest first, with its gate numbers."""
    from trainers.registry import CheckpointRegistry

    settings: FlywheelSettings = ctx.obj
    registry = CheckpointRegistry(settings.trainers.registry)
    manifests = registry.list(model)
    if not manifests:
        typer.echo(f"no checkpoints under {registry.root}")
        return
    typer.echo(
        f"{'model':<22} {'version':<20} {'status':<9} {'kind':<5} {'job':<6} {'IF':>6} {'viol':>6} {'win':>6}  created"
    )
    for m in manifests:
        ev = m.eval

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        typer.echo(
            f"{m.model:<22} {m.version:<20} {m.status:<9} {m.kind:<5} {m.job_kind or '-':<6} "
            f"{num(ev.instruction_following if ev else None):>6} {num(ev.violation_rate if ev else None):>6} "
            f"{num(ev.win_rate if ev else None):>6}  {m.created_ts:%Y-%m-%d %H:%M:%S}"
        )


@registry_app.command("import-base")
def registry_import_base(
    ctx: typer.Context,
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="FOLDER", help="A Hugging Face model folder: config.json, safetensors weights, tokenizer."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name in the registry (default: the model the buffer's jobs train)."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version name (default: the workers' base_version, 'base')."),
    ] = None,
) -> None:
    """Publish an external base model (the one vLLM serves) as <model>/<version>.

    Policies are trained as LoRA adapters of this base, so vLLM applies every generation to the model its replicas already run.

    The folder must hold config.json, safetensors weights (no pickle files, no symbolic links) and a tokenizer with a chat template; every problem is listed. Importing the same folder again changes nothing; a version already published from something else is refused (versions are immutable: pick another --version). Workers can import it themselves at start: FLYWHEEL_TRAINERS__BASE_DIR=FOLDER.
    """
    from trainers.registry import CheckpointRegistry, import_base

    settings: FlywheelSettings = ctx.obj
    model = model or settings.streams.buffer.model
    version = version or settings.trainers.base_version
    registry = CheckpointRegistry(settings.trainers.registry)
    try:
        checkpoint = import_base(registry, folder, model, version)
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    size_gb = sum(f.size for f in checkpoint.manifest.files) / 1e9
    typer.echo(
        f"{model}/{version}: {checkpoint.path} ({len(checkpoint.manifest.files)} files, {size_gb:.2f} GB, "
        f"{checkpoint.manifest.job_id})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(trainers_app, name="trainers")
    app.add_typer(registry_app, name="registry")
