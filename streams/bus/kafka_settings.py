"""Kafka connection settings. Security settings pass straight through to librdkafka."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class KafkaSettings(BaseModel):
    """How to reach the cluster. Set as ``FLYWHEEL_KAFKA__<FIELD>`` (e.g.
    ``FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS``) or in the ``kafka`` section of the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = Field(default="127.0.0.1:19092", description="host:port[,host:port…]")
    client_id: str = Field(default="flywheel", description="Shown in broker logs and quotas.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = Field(default=None, description="CA bundle (PEM) to verify the brokers.")
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    linger_ms: int = Field(
        default=20, ge=0, description="Producer batching delay; 5–100 trades latency for throughput."
    )
    compression_type: Literal["none", "lz4", "zstd", "snappy", "gzip"] = "lz4"
    extra: dict[str, str] = Field(default_factory=dict, description="Any other librdkafka property, passed as is.")

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka properties common to producers, consumers and the admin client."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.extra)
        return conf
