"""The `flywheel` command: one sub-command group per part of the platform."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from flywheel.cli import _demo, _platform, _serving, _streams, _trainers
from flywheel.settings import load_settings
from flywheel.wiring import configure_logging

app = typer.Typer(
    name="flywheel",
    help="Continuously improve a chat LLM from its own traffic: events → signals → samples → "
    "training → gated checkpoints → canary → promote or roll back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML or YAML settings file (FLYWHEEL_CONFIG_FILE).")
    ] = None,
) -> None:
    settings = load_settings(config)
    configure_logging(settings.log_level)
    ctx.obj = settings


_platform.register(app)
_demo.register(app)
_streams.register(app)
_serving.register(app)
_trainers.register(app)


def one_line_summaries(typer_app: typer.Typer) -> None:
    """Give every command without a ``short_help`` its docstring's first paragraph on one line.

    In the command lists of ``--help`` typer's rich mode keeps the docstring's hard line
    breaks, so a summary broke mid-sentence wherever the source wrapped; on one line, rich
    wraps it to the terminal. Commands of sub-apps (``streams``, ``trainers``, ...) too.
    """
    for command in typer_app.registered_commands:
        doc = command.help or (inspect.getdoc(command.callback) if command.callback else None)
        if command.short_help is None and doc:
            command.short_help = " ".join(doc.split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            one_line_summaries(group.typer_instance)


one_line_summaries(app)


def main() -> None:
    app()
