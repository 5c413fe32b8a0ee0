"""Settings of the admin API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AdminConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin API; unset = the admin API is disabled."
    )
