"""Serving: engines, the OpenAI-compatible gateway with canary routing and event logging,
hot-swap, canary analysis, and the admin API. Imports only ``schemas`` and ``streams``."""

from serving._errors import (
    AdminAuthError,
    ApiKeyError,
    AuthenticationError,
    ContextLengthExceededError,
    DeadlineExceededError,
    DeploymentStateError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    OverloadedError,
    RequestTooLargeError,
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
    "ApiKeyError",
    "AuthenticationError",
    "CanaryConfig",
    "CanaryController",
    "ContextLengthExceededError",
    "DeadlineExceededError",
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
    "RequestTooLargeError",
    "RoutingStore",
    "ServingSettings",
    "VllmEngine",
    "create_app",
    "gateway_error_counts",
]
