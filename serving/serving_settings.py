"""All serving settings in one frozen model: ``FlywheelSettings.serving``
(environment ``FLYWHEEL_SERVING__…``, e.g. ``FLYWHEEL_SERVING__ADMIN__TOKEN``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.admin.admin_config import AdminConfig
from serving.canary.canary_config import CanaryConfig
from serving.engines.embedded_config import EmbeddedEngineConfig
from serving.engines.vllm_config import VllmEngineConfig
from serving.gateway.gateway_config import GatewayConfig
from serving.hotswap.hotswap_config import HotSwapConfig
from serving.leader.leader_config import LeaderConfig


class ServingSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: Literal["embedded", "vllm"] = Field(default="embedded", description="Which engine serves the model.")
    routing_store: Literal["redis", "memory"] = Field(
        default="redis", description="Where routing state lives; memory = one process only."
    )
    routing_prefix: str = Field(default="flywheel:routing", description="Redis key prefix of routing state.")
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    embedded: EmbeddedEngineConfig = Field(default_factory=EmbeddedEngineConfig)
    vllm: VllmEngineConfig = Field(default_factory=VllmEngineConfig)
    hotswap: HotSwapConfig = Field(default_factory=HotSwapConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    leader: LeaderConfig = Field(
        default_factory=LeaderConfig,
        description="Leader election among replicas (Redis routing only; with memory routing the one process leads).",
    )
    request_counts_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica adds its request counts to the shared ones the error-rate guardrail reads.",
    )
