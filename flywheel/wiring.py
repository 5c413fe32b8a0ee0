"""Build the platform's parts from settings."""

from __future__ import annotations

import logging

from flywheel.settings import FlywheelSettings
from streams import Bus, EmbeddedBus, KafkaBus


def make_bus(settings: FlywheelSettings) -> Bus:
    if settings.bus == "embedded":
        return EmbeddedBus()
    return KafkaBus(settings.kafka)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
