"""Composition root: CLI, settings, wiring, embedded runtime, simulator. Nothing imports it."""
