"""The OpenAI-compatible gateway: routes, request handling, event logging."""

from serving.gateway.admission import Admission
from serving.gateway.app import Gateway, create_app
from serving.gateway.caller import caller_from
from serving.gateway.errors import classify, error_body
from serving.gateway.events import EventLogger, EventLogStats
from serving.gateway.gateway_config import GatewayConfig
from serving.gateway.handler import ChatHandler

__all__ = [
    "Admission",
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
