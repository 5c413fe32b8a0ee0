"""Serving: engines, the OpenAI-compatible gateway with canary routing and event logging,
hot-swap, canary analysis, and the admin API. Imports only ``schemas`` and ``streams``."""

from serving._errors import (
    AdminAuthError,
    DeploymentStateError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    OverloadedError,
)
from serving.admin import AdminConfig, AdminService
from serving.canary import CanaryConfig, CanaryController, gateway_error_counts
from serving.engines import EmbeddedEngine, Engine, ModelSource, VllmEngine
from serving.gateway import EventLogger, Gateway, GatewayConfig, create_app
from serving.hotswap import HotSwapConfig, HotSwapController, ModelSlots
from serving.routing import MemoryRoutingStore, RedisRoutingStore, RoutingStore
from serving.serving_settings import ServingSettings

__all__ = [
    "AdminAuthError",
    "AdminConfig",
    "AdminService",
    "CanaryConfig",
    "CanaryController",
    "DeploymentStateError",
    "EmbeddedEngine",
    "Engine",
    "EngineUnavailableError",
    "EventLogger",
    "Gateway",
    "GatewayConfig",
    "HotSwapConfig",
    "HotSwapController",
    "InvalidRequestError",
    "MemoryRoutingStore",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelSlots",
    "ModelSource",
    "OverloadedError",
    "RedisRoutingStore",
    "RoutingStore",
    "ServingSettings",
    "VllmEngine",
    "create_app",
    "gateway_error_counts",
]
