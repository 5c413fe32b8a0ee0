"""The `flywheel` command: one sub-command group per part of the platform."""

from __future__ import annotations

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


def main() -> None:
    app()
