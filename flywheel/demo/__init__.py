"""`flywheel demo`: the whole loop in one process, with live progress and a report."""

from flywheel.demo.config import DemoConfig

__all__ = ["DemoConfig"]
