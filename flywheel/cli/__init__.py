"""`flywheel` command line."""

from flywheel.cli.app import app, main

__all__ = ["app", "main"]
