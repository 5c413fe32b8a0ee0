"""Settings of leader election among gateway replicas (``FLYWHEEL_SERVING__LEADER__…``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LeaderConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lease_ttl_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a leader's lease lasts without renewal: after the leader dies, another "
        "replica takes over within this.",
    )
    renew_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the leader renews its lease (and a follower tries to take a free one).",
    )
    replica_id: str = Field(
        default="",
        description="This replica's name in the lease and in replica reports; empty = <hostname>:<pid>.",
    )

    @model_validator(mode="after")
    def _check(self) -> LeaderConfig:
        if self.renew_interval_s * 2 > self.lease_ttl_s:
            raise ValueError(
                f"renew_interval_s ({self.renew_interval_s}) must be at most half of lease_ttl_s "
                f"({self.lease_ttl_s}), so one late renewal does not lose the lease; lower renew_interval_s"
            )
        return self
