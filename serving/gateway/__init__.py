"""The OpenAI-compatible gateway: routes, request handling, event logging."""

from serving.gateway.app import Gateway, create_app
from serving.gateway.errors import classify, error_body
from serving.gateway.events import EventLogger, EventLogStats
from serving.gateway.gateway_config import GatewayConfig
from serving.gateway.handler import ChatHandler, caller_from

__all__ = [
    "ChatHandler",
    "EventLogStats",
    "EventLogger",
    "Gateway",
    "GatewayConfig",
    "caller_from",
    "classify",
    "create_app",
    "error_body",
]
