"""Settings: FLYWHEEL_ environment, an optional TOML/YAML file, security pass-through."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.settings import CONFIG_FILE_ENV, FlywheelSettings, load_settings


def test_environment_with_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_BUS", "embedded")
    monkeypatch.setenv("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("FLYWHEEL_TOPIC_NAMESPACE", "staging")
    settings = FlywheelSettings()
    assert settings.bus == "embedded"
    assert settings.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert settings.topics.chat_events == "staging.chat.events"


def test_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "flywheel.toml"
    config.write_text('max_text_chars = 1000\n[kafka]\nbootstrap_servers = "from-file:9092"\nclient_id = "file"\n')
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    monkeypatch.delenv("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("FLYWHEEL_KAFKA__CLIENT_ID", "env")
    settings = load_settings(config)
    assert settings.max_text_chars == 1000
    assert settings.kafka.bootstrap_servers == "from-file:9092"
    assert settings.kafka.client_id == "env"
    assert settings.limits.max_text_chars == 1000
    assert FlywheelSettings().max_text_chars == 32_000  # the file applied to that load only


def test_policy_recipe_from_the_environment_or_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    assert FlywheelSettings().streams.buffer.recipe == "sft"
    config = tmp_path / "flywheel.toml"
    config.write_text('[streams.buffer]\nrecipe = "dpo"\n')
    assert load_settings(config).streams.buffer.recipe == "dpo"
    monkeypatch.setenv("FLYWHEEL_STREAMS__BUFFER__RECIPE", "grpo")
    assert load_settings(config).streams.buffer.recipe == "grpo"  # the environment wins
    monkeypatch.setenv("FLYWHEEL_STREAMS__BUFFER__RECIPE", "ppo")
    with pytest.raises(ValidationError, match="recipe"):
        FlywheelSettings()


def test_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "flywheel.yaml"
    config.write_text("bus: embedded\nkafka:\n  linger_ms: 50\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    settings = FlywheelSettings()
    assert settings.bus == "embedded" and settings.kafka.linger_ms == 50


def test_sasl_ssl_pass_through_and_secret_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLYWHEEL_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FLYWHEEL_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("FLYWHEEL_KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("FLYWHEEL_KAFKA__SSL_CA_LOCATION", "/etc/ca.pem")
    monkeypatch.setenv("FLYWHEEL_KAFKA__EXTRA", '{"socket.keepalive.enable": "true"}')
    settings = FlywheelSettings()
    conf = settings.kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "svc" and conf["sasl.password"] == "s3cret"
    assert conf["ssl.ca.location"] == "/etc/ca.pem" and conf["socket.keepalive.enable"] == "true"
    assert "s3cret" not in repr(settings)


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_BUS", "carrier-pigeon")
    with pytest.raises(ValidationError) as info:
        FlywheelSettings()
    assert "bus" in str(info.value)


def test_unknown_config_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_ENV, str(tmp_path / "flywheel.ini"))
    with pytest.raises(ValueError, match="toml"):
        FlywheelSettings()
