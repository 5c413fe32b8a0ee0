"""Settings of the whole platform: environment (``FLYWHEEL_…``, nested with ``__``),
an optional TOML/YAML file, and defaults — in that order of precedence.

The environment is read here and nowhere else.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from flywheel.demo.config import DemoConfig
from schemas import Topics, ValidationLimits
from serving.serving_settings import ServingSettings
from streams import KafkaSettings
from streams.runners import StreamsSettings
from trainers.worker import TrainerWorkerSettings

CONFIG_FILE_ENV = "FLYWHEEL_CONFIG_FILE"
# A --config given on the command line; wins over FLYWHEEL_CONFIG_FILE.
_config_file: ContextVar[str | None] = ContextVar("flywheel_config_file", default=None)


class FlywheelSettings(BaseSettings):
    """Every setting, e.g. ``FLYWHEEL_BUS=kafka``, ``FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS=…``.

    A config file (TOML or YAML) named by ``FLYWHEEL_CONFIG_FILE`` or ``--config`` may set
    the same keys (``[kafka] bootstrap_servers = "…"``); the environment wins over it.
    """

    model_config = SettingsConfigDict(env_prefix="FLYWHEEL_", env_nested_delimiter="__", frozen=True, extra="forbid")

    bus: Literal["kafka", "embedded"] = Field(default="kafka", description="Which bus processes talk to.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic_namespace: str = Field(
        default="", description="Prefix of every topic name (e.g. 'staging'); '' = the plain names."
    )
    redis_url: str = Field(default="redis://127.0.0.1:16379/0", description="Shared routing state and trainer leases.")
    max_text_chars: int = Field(
        default=32_000, gt=0, description="Longest accepted chat text; longer events are dead-lettered."
    )
    max_clock_skew_s: float = Field(default=300.0, ge=0, description="How far in the future an event time may lie.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Port of /metrics for worker processes; 0 = none.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    demo: DemoConfig = Field(
        default_factory=DemoConfig, description="`flywheel demo` and the user simulator (`flywheel simulate`)."
    )
    streams: StreamsSettings = Field(
        default_factory=StreamsSettings, description="Stream processors and their runners (`flywheel streams run`)."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings,
        description="Gateway, engines, hot-swap, canary and admin API (`flywheel serve`).",
    )
    trainers: TrainerWorkerSettings = Field(
        default_factory=TrainerWorkerSettings,
        description="Trainer workers, registry, offline gate and trainer defaults (`flywheel trainers run`).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get() or os.environ.get(CONFIG_FILE_ENV)
        if path:
            suffix = Path(path).suffix.lower()
            if suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            elif suffix in {".yaml", ".yml"}:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            else:
                raise ValueError(f"{CONFIG_FILE_ENV}={path!r}: use a .toml, .yaml or .yml file")
        return tuple(sources)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_namespace)

    @property
    def limits(self) -> ValidationLimits:
        return ValidationLimits(max_text_chars=self.max_text_chars, max_clock_skew_s=self.max_clock_skew_s)


def load_settings(config_file: Path | None = None, **overrides: Any) -> FlywheelSettings:
    """Settings from the environment, ``config_file`` (if given) and ``overrides``."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")
    token = _config_file.set(str(config_file) if config_file else None)
    try:
        return FlywheelSettings(**overrides)
    finally:
        _config_file.reset(token)
