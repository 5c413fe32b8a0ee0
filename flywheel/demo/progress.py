"""Live progress on the terminal: one status line redrawn in place, and a log line for
every stage change. Without a terminal (CI, pipes) only the log lines are printed."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Thread-safe; ``status`` fields are shown as ``key value`` pairs in insertion order."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 0.5, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._live = enabled and self._stream.isatty()
        self._enabled = enabled
        self._interval_s = interval_s
        self._fields: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._width = 0
        self._started = time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def status(self, **fields: object) -> None:
        """Update some fields of the status line (redrawn at most every ``interval_s``)."""
        with self._lock:
            for key, value in fields.items():
                if value is None:
                    self._fields.pop(key, None)
                else:
                    self._fields[key] = str(value)
            now = time.monotonic()
            if self._live and now - self._last_draw >= self._interval_s:
                self._draw()
                self._last_draw = now

    def event(self, message: str) -> None:
        """A line that stays: a stage began or ended."""
        if not self._enabled:
            return
        with self._lock:
            self._clear()
            self._stream.write(f"[{self.elapsed_s():6.1f}s] {message}\n")
            if self._live:
                self._draw()
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._clear()
            self._stream.flush()

    def _line(self) -> str:
        return f"[{self.elapsed_s():6.1f}s] " + " | ".join(f"{k} {v}" for k, v in self._fields.items())

    def _draw(self) -> None:
        line = self._line()[:200]
        pad = max(0, self._width - len(line))
        self._stream.write("\r" + line + " " * pad)
        self._stream.flush()
        self._width = len(line)

    def _clear(self) -> None:
        if self._live and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._width = 0
