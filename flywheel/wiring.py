"""Build the platform's parts from settings."""

from __future__ import annotations

import logging

from flywheel.settings import FlywheelSettings
from streams import Bus, EmbeddedBus, KafkaBus


def make_bus(settings: FlywheelSettings) -> Bus:
    if settings.bus == "embedded":
        return EmbeddedBus()
    return KafkaBus(settings.kafka)


# Client libraries that log every HTTP request at INFO would drown our own progress logs.
_CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "urllib3", "uvicorn.access", "aiokafka", "faust")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
