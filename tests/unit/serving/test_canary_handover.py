"""A controller that takes over mid-canary (a new leader, a fresh object that shares only
the routing store and the topics) continues the same experiment from the store's
bookkeeping: the same burn-ins, the same step start for the per-step minimum, the same
running p-values, so it takes every decision a single controller takes on the same data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import CanaryDecision, Topics
from serving import CanaryConfig, CanaryController, MemoryRoutingStore
from streams import EmbeddedBus
from tests._serving import window_aggregate

pytestmark = pytest.mark.timeout(60)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
CONFIG = CanaryConfig(
    mde={"continue_rate": 0.05, "depth": 0.5, "breadth": 0.05}, min_samples_per_step=300, burn_in_s=120
)


def _run(topics: Topics, hand_over_after: int | None) -> list[tuple[str, int, str]]:
    """Decisions of one canary fed the same seeded windows; with ``hand_over_after`` the
    controller is replaced by a new one that many minutes after the first advance."""
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    store = MemoryRoutingStore()
    ctl = CanaryController(CONFIG, "policy", store, bus, topics)
    ctl.bootstrap("v1", T0)
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    rng = np.random.default_rng(11)
    producer = bus.producer()
    decisions: list[CanaryDecision] = []
    advanced_at: int | None = None
    for minute in range(1, 200):
        state = store.get("policy")
        if state.status != "canary":
            break
        if hand_over_after is not None and advanced_at is not None and minute == advanced_at + hand_over_after:
            ctl.close()
            ctl = CanaryController(CONFIG, "policy", store, bus, topics)  # reads all signals again
        start = T0 + timedelta(minutes=minute)
        n_c = int(rng.binomial(400, state.share_bp / 10_000))
        # Young conversations right after a change look far better: only the burn-in hides that.
        boost = 0.3 if advanced_at is not None and minute - advanced_at <= 2 else 0.0
        for agg in (
            window_aggregate(rng, "baseline", "v1", start, 400 - n_c, partition=0),
            window_aggregate(rng, "candidate", "v2", start, n_c, partition=1, p_continue=0.48 + boost),
        ):
            producer.produce(topics.engagement_signals, agg.to_json_bytes(), key=agg.arm)
        decision = ctl.evaluate_once(start + timedelta(seconds=90))
        assert decision is not None
        decisions.append(decision)
        if decision.action == "advance" and advanced_at is None:
            advanced_at = minute
    ctl.close()
    return [(d.action, d.share_bp_after, d.reason) for d in decisions]


def test_a_new_controller_mid_canary_decides_as_one_controller_would(topics: Topics) -> None:
    single = _run(topics, None)
    actions = [a for a, _, _ in single if a != "hold"]
    assert actions[0] == "advance" and actions[-1] == "promote", actions
    for after in (1, 4):  # inside the burn-in of step 2, and after it while collecting
        assert _run(topics, after) == single
