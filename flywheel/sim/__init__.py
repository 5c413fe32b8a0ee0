"""User simulator: a seeded population with hidden preferences, talking to the gateway
through its public API and emitting the client-side chat events (feedback, session ends)."""

from flywheel.sim._catalogue import Catalogue, Character, Topic, shared_catalogue
from flywheel.sim._client import ChatClient, GatewayClient, TurnReply, TurnRequest
from flywheel.sim._clock import DAY_S, Clock, SimClock, WallClock
from flywheel.sim._judge import Reaction, ReplyJudgement, continue_probability, judge_reply, react, reply_utility
from flywheel.sim._population import Population, Preferences, SimUser, draw_preferences
from flywheel.sim._stats import SimStats, TurnRecord, VersionStats
from flywheel.sim.config import SimulatorConfig
from flywheel.sim.simulator import Simulator

__all__ = [
    "DAY_S",
    "Catalogue",
    "Character",
    "ChatClient",
    "Clock",
    "GatewayClient",
    "Population",
    "Preferences",
    "Reaction",
    "ReplyJudgement",
    "SimClock",
    "SimStats",
    "SimUser",
    "Simulator",
    "SimulatorConfig",
    "Topic",
    "TurnRecord",
    "TurnReply",
    "TurnRequest",
    "VersionStats",
    "WallClock",
    "continue_probability",
    "draw_preferences",
    "judge_reply",
    "react",
    "reply_utility",
    "shared_catalogue",
]
