"""`flywheel streams run signals|curation|buffer`: one stream processor in this process."""

from __future__ import annotations

import logging
import signal
import time
from enum import StrEnum
from typing import Annotated

import typer

from flywheel.settings import FlywheelSettings
from flywheel.wiring import make_bus, make_processor
from schemas import FlywheelError, Topics
from streams.runners import EmbeddedRunner, FaustRunner, RunnerConfig, TransactionalRunner

log = logging.getLogger(__name__)
streams_app = typer.Typer(
    help="Stream processors: engagement signals, sample curation, sample buffer / job trigger.", no_args_is_help=True
)


class ProcessorName(StrEnum):
    signals = "signals"
    curation = "curation"
    buffer = "buffer"


class RunnerName(StrEnum):
    kafka = "kafka"
    faust = "faust"
    embedded = "embedded"


def default_group(name: str, topics: Topics) -> str:
    return f"{topics.namespace}.flywheel-{name}" if topics.namespace else f"flywheel-{name}"


@streams_app.command("run")
def run(
    ctx: typer.Context,
    processor: Annotated[
        ProcessorName,
        typer.Argument(
            help="Which processor: signals (chat.events → engagement.signals), "
            "curation (chat.events → samples.*), buffer (samples.* → trainer.jobs)."
        ),
    ],
    runner: Annotated[
        RunnerName,
        typer.Option(
            "--runner",
            "-r",
            help="kafka: transactions, exactly-once (default); "
            "faust: faust-streaming, at-least-once; embedded: the in-process bus.",
        ),
    ] = RunnerName.kafka,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Consumer group; processes of one group share the partitions. Default: flywheel-<processor>.",
        ),
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option("--instance", help="Stable id of this process in its group (keep it across restarts)."),
    ] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve /metrics here (0 = off).")] = None,
    exit_when_idle_s: Annotated[
        float | None,
        typer.Option(
            "--exit-when-idle",
            help="Stop after this many seconds without input (kafka/embedded runners; for batch runs).",
        ),
    ] = None,
) -> None:
    """Run one stream processor until SIGTERM / Ctrl-C. Bad input goes to chat.events.dlq."""
    settings: FlywheelSettings = ctx.obj
    topics = settings.topics
    proc = make_processor(processor.value, settings, topics)
    overrides: dict[str, object] = {}
    if instance is not None:
        overrides["instance_id"] = instance
    port = metrics_port if metrics_port is not None else (settings.streams.runner.metrics_port or settings.metrics_port)
    overrides["metrics_port"] = port
    config = RunnerConfig(**{**settings.streams.runner.model_dump(), **overrides})
    group_id = group or default_group(processor.value, topics)
    if runner is RunnerName.faust:
        bootstrap = settings.kafka.bootstrap_servers.split(",")[0]
        if "faust_broker" not in settings.streams.runner.model_fields_set:
            config = config.model_copy(update={"faust_broker": f"kafka://{bootstrap}"})
        bus = make_bus(settings)
        partitions = bus.partitions(topics.chat_events)
        FaustRunner(proc, topics, group_id, config, partitions=partitions, dlq=settings.streams.dlq).run()
        return
    bus = make_bus(settings)
    cls = EmbeddedRunner if runner is RunnerName.embedded else TransactionalRunner
    loop = cls(bus, proc, topics, group_id, config, settings.streams.dlq)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        loop.start()
        idle_since = time.monotonic()
        while not stopping:
            if loop.poll_once():
                idle_since = time.monotonic()
            elif exit_when_idle_s is not None and time.monotonic() - idle_since >= exit_when_idle_s:
                break
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        loop.stop()
    typer.echo(f"{processor.value}: {loop.events_in} in, {loop.events_out} out, {loop.dead_letters} dead-lettered")


def register(app: typer.Typer) -> None:
    app.add_typer(streams_app, name="streams")
