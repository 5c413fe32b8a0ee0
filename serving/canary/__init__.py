"""Canary analysis: always-valid sequential tests, guardrails, SRM, and the controller
that moves traffic along the steps, promotes or rolls back."""

from serving.canary.analysis import Analysis, ArmTotals, analyse, decide, horizon_n, lift_summary, merge
from serving.canary.canary_config import GOALS, GUARDRAILS, CanaryConfig
from serving.canary.controller import CanaryController, ensure_topics
from serving.canary.error_counts import (
    ErrorCounts,
    RequestCountPublisher,
    fleet_error_counts,
    gateway_error_counts,
)

__all__ = [
    "GOALS",
    "GUARDRAILS",
    "Analysis",
    "ArmTotals",
    "CanaryConfig",
    "CanaryController",
    "ErrorCounts",
    "RequestCountPublisher",
    "analyse",
    "decide",
    "ensure_topics",
    "fleet_error_counts",
    "gateway_error_counts",
    "horizon_n",
    "lift_summary",
    "merge",
]
