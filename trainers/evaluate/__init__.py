"""Offline evaluation gate: held-out prompts, candidate vs baseline, guardrails and the
win-rate ceiling. Its EvalReport is stored in the checkpoint manifest."""

from trainers.evaluate.gate import OfflineGate, PolicyStats, evaluation_prompts, policy_stats
from trainers.evaluate.gate_config import GateConfig

__all__ = ["GateConfig", "OfflineGate", "PolicyStats", "evaluation_prompts", "policy_stats"]
