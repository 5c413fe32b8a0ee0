"""Foundation commands: topics, schemas, produce."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel.settings import FlywheelSettings
from flywheel.wiring import make_bus
from schemas import TOPICS, FlywheelError, export_json_schemas
from streams import ProduceInterruptedError, produce_lines

topics_app = typer.Typer(help="Create and list the platform's Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Message contracts (JSON Schema) for producers in any language.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every topic with its partitions and cleanup policy. Safe to run again."""
    settings: FlywheelSettings = ctx.obj
    specs = settings.topics.specs()
    created = make_bus(settings).create_topics(specs)
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{spec.name:<22} {spec.partitions:>3} partitions  {spec.cleanup:<8} {state}")


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic table: name, key, value contract, partitions, cleanup."""
    for spec in TOPICS:
        typer.echo(
            f"{spec.name:<22} key={spec.key:<26} value={spec.value:<34} partitions={spec.partitions} {spec.cleanup}"
        )


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Folder to write <Message>.schema.json files into.")],
) -> None:
    """Write one JSON Schema file per message type."""
    for path in export_json_schemas(directory):
        typer.echo(str(path))


def produce(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one chat event per line ('-' for stdin).")],
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 1 if any line was rejected.")] = False,
) -> None:
    """Validate chat events from a JSONL file and send them to chat.events.

    Every other line (invalid, not JSON, not UTF-8, or too large for the broker) is
    reported with its line number and reason and sent to chat.events.dlq with the reason,
    so nothing is lost; no bad line stops the run. Exit status 2: the bus failed.
    """
    settings: FlywheelSettings = ctx.obj
    bus = make_bus(settings)
    producer = bus.producer()
    dlq = settings.streams.dlq
    interrupted: ProduceInterruptedError | None = None
    try:
        if str(file) == "-":
            summary = produce_lines(
                typer.get_binary_stream("stdin"), producer, "stdin", settings.limits, settings.topics, dlq=dlq
            )
        else:
            with file.open("rb") as lines:
                summary = produce_lines(lines, producer, file.name, settings.limits, settings.topics, dlq=dlq)
    except ProduceInterruptedError as exc:
        interrupted, summary = exc, exc.summary
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        producer.close()
    for number, reason in summary.rejections:
        typer.echo(f"{file}:{number}: rejected: {reason}", err=True)
    if summary.rejected > len(summary.rejections):
        typer.echo(f"… and {summary.rejected - len(summary.rejections)} more rejected lines", err=True)
    truncated = f", {summary.truncated} of them truncated to {dlq.max_bytes} bytes" if summary.truncated else ""
    typer.echo(
        f"sent {summary.sent}, rejected {summary.rejected}, blank {summary.blank} of {summary.lines} lines read "
        f"(rejected lines are in {settings.topics.chat_events_dlq}{truncated})"
    )
    if interrupted is not None:
        typer.echo(f"error: {interrupted}; the lines after line {summary.lines} were not read", err=True)
        raise typer.Exit(2)
    if strict and summary.rejected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
    app.add_typer(schemas_app, name="schemas")
    app.command("produce")(produce)
