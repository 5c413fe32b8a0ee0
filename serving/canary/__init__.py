"""Canary analysis: always-valid sequential tests, guardrails, SRM, and the controller
that moves traffic along the steps, promotes or rolls back."""

from serving.canary.analysis import Analysis, ArmTotals, analyse, decide, horizon_n, lift_summary, merge
from serving.canary.canary_config import GOALS, GUARDRAILS, CanaryConfig
from serving.canary.controller import CanaryController, ErrorCounts, ensure_topics, gateway_error_counts

__all__ = [
    "GOALS",
    "GUARDRAILS",
    "Analysis",
    "ArmTotals",
    "CanaryConfig",
    "CanaryController",
    "ErrorCounts",
    "analyse",
    "decide",
    "ensure_topics",
    "gateway_error_counts",
    "horizon_n",
    "lift_summary",
    "merge",
]
