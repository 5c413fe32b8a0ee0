"""The deployment controller's decisions on synthetic window aggregates (embedded bus,
in-memory routing store): steps advance only on evidence, bad candidates roll back,
SRM halts, no data holds, operators act with who/why, every decision is published."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import (
    ArmWindowAggregate,
    CanaryDecision,
    DeploymentState,
    Topics,
    WindowCounters,
    counter,
    deployment_record_adapter,
)
from serving import CanaryConfig, CanaryController, MemoryRoutingStore
from serving._errors import DeploymentStateError
from serving.canary import ArmTotals, analyse, decide, merge
from streams import EmbeddedBus, TopicPartition
from tests._serving import window_aggregate

pytestmark = pytest.mark.timeout(60)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
CONFIG = CanaryConfig(
    mde={"continue_rate": 0.05, "depth": 0.5, "breadth": 0.05}, min_samples_per_step=300, burn_in_s=120
)


@pytest.fixture
def setup(topics: Topics):
    bus = EmbeddedBus()
    bus.create_topics(topics.specs())
    store = MemoryRoutingStore()
    ctl = CanaryController(CONFIG, "policy", store, bus, topics)
    ctl.bootstrap("v1", T0)
    return bus, store, ctl, topics


def _publish(bus: EmbeddedBus, topics: Topics, aggs: list) -> None:
    producer = bus.producer()
    for a in aggs:
        producer.produce(topics.engagement_signals, a.to_json_bytes(), key=a.arm)


def _run(bus, topics, ctl, store, rng, cand_kw, minutes=200, users=400):
    decisions = []
    for i in range(minutes):
        state = store.get("policy")
        if state.status != "canary":
            break
        start = T0 + timedelta(minutes=i + 1)
        share = state.share_bp / 10_000
        n_c = int(rng.binomial(users, share))
        _publish(
            bus,
            topics,
            [
                window_aggregate(rng, "baseline", "v1", start, users - n_c, partition=0),
                window_aggregate(rng, "candidate", state.candidate_version, start, max(n_c, 0), partition=1, **cand_kw),
            ],
        )
        d = ctl.evaluate_once(start + timedelta(seconds=90))
        decisions.append(d)
    return decisions


def _published(bus: EmbeddedBus, topics: Topics) -> list:
    consumer = bus.consumer()
    consumer.assign({TopicPartition(topics.serving_deployments, 0): 0})
    return [deployment_record_adapter.validate_json(r.value) for r in consumer.consume(100_000, 0.0)]


def test_good_candidate_is_promoted_step_by_step(setup) -> None:
    bus, store, ctl, topics = setup
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    decisions = _run(bus, topics, ctl, store, np.random.default_rng(1), {"p_continue": 0.5, "p_violation": 0.08})
    actions = [d.action for d in decisions if d.action != "hold"]
    assert actions == ["advance", "advance", "promote"]
    shares = [d.share_bp_after for d in decisions if d.action == "advance"]
    assert shares == [2000, 5000]
    final = store.get("policy")
    assert final.baseline_version == "v2" and final.candidate_version is None and final.status == "idle"
    promote = decisions[-1]
    cr = next(r for r in promote.metrics if r.name == "continue_rate")
    assert cr.verdict == "better" and cr.ci_low > 0 and cr.ci_low < cr.lift < cr.ci_high
    records = _published(bus, topics)
    assert isinstance(records[-1], DeploymentState) and records[-1].baseline_version == "v2"
    assert [r.action for r in records if isinstance(r, CanaryDecision) and r.action != "hold"] == [
        "promote",
        "start",
        "advance",
        "advance",
        "promote",
    ]


def test_bad_candidate_rolls_back_at_the_first_step(setup) -> None:
    bus, store, ctl, topics = setup
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    decisions = _run(bus, topics, ctl, store, np.random.default_rng(2), {"p_violation": 0.2})
    assert decisions[-1].action == "rollback"
    assert "violation_rate" in decisions[-1].reason
    assert max(d.share_bp_after for d in decisions[:-1]) == CONFIG.steps_bp[0]
    assert store.get("policy").candidate_version is None and store.get("policy").baseline_version == "v1"


def test_windows_in_the_burn_in_after_each_change_are_left_out(setup) -> None:
    """Right after the canary opens (and after each step) the candidate looks far better
    (its conversations are all young); those windows must not decide anything."""
    bus, _store, ctl, topics = setup
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    rng = np.random.default_rng(5)
    for i in range(3):  # windows overlapping [0:30, 2:30): in the burn-in
        start = T0 + timedelta(minutes=i)
        _publish(
            bus,
            topics,
            [
                window_aggregate(rng, "baseline", "v1", start, 4750, p_continue=0.4),
                window_aggregate(rng, "candidate", "v2", start, 250, partition=1, p_continue=0.8),
            ],
        )
    d = ctl.evaluate_once(T0 + timedelta(minutes=3, seconds=30))
    assert d.action == "hold" and d.reason.startswith("no data")
    assert ctl.last_analysis.n_candidate == 0 and ctl.last_analysis.n_baseline == 0
    settled = T0 + timedelta(minutes=3)  # the first window wholly after the burn-in counts
    _publish(
        bus,
        topics,
        [
            window_aggregate(rng, "baseline", "v1", settled, 1900),
            window_aggregate(rng, "candidate", "v2", settled, 100, partition=1),
        ],
    )
    d = ctl.evaluate_once(settled + timedelta(seconds=90))
    assert (
        0 < ctl.last_analysis.n_candidate < 1000
        and next(r for r in d.metrics if r.name == "continue_rate").verdict != "better"
    )


def test_no_data_holds_and_srm_halts(setup) -> None:
    bus, store, ctl, topics = setup
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    d = ctl.evaluate_once(T0 + timedelta(minutes=1))
    assert d.action == "hold" and d.reason.startswith("no data")
    rng = np.random.default_rng(4)
    for i in range(3):  # candidate gets 20 % of users although the share is 5 %
        start = T0 + timedelta(minutes=2 + i)
        _publish(
            bus,
            topics,
            [
                window_aggregate(rng, "baseline", "v1", start, 800),
                window_aggregate(rng, "candidate", "v2", start, 200, partition=1),
            ],
        )
    d = ctl.evaluate_once(T0 + timedelta(minutes=6))
    assert d.action == "halt" and d.srm_p_value < 0.001
    assert store.get("policy").status == "halted" and store.get("policy").share_bp == 0
    assert ctl.evaluate_once(T0 + timedelta(minutes=7)) is None  # halted: the operator decides


def test_a_ratio_skewed_only_in_the_burn_in_does_not_halt(setup) -> None:
    """The sample-ratio check reads the same settled windows as the comparison."""
    bus, _store, ctl, topics = setup
    ctl.start_canary("v2", T0 + timedelta(seconds=30))
    rng = np.random.default_rng(6)
    start = T0 + timedelta(minutes=1)  # in the burn-in: 2 % of users on the candidate although the share is 5 %
    _publish(
        bus,
        topics,
        [
            window_aggregate(rng, "baseline", "v1", start, 2940),
            window_aggregate(rng, "candidate", "v2", start, 60, partition=1),
        ],
    )
    d = ctl.evaluate_once(start + timedelta(seconds=90))
    assert d.action == "hold" and d.srm_p_value is None
    skewed = T0 + timedelta(minutes=3)  # the same skew in a settled window halts
    _publish(
        bus,
        topics,
        [
            window_aggregate(rng, "baseline", "v1", skewed, 2940),
            window_aggregate(rng, "candidate", "v2", skewed, 60, partition=1),
        ],
    )
    d = ctl.evaluate_once(skewed + timedelta(seconds=90))
    assert d.action == "halt" and d.srm_p_value < 0.001


def test_operator_actions_are_recorded_with_actor_and_reason(setup) -> None:
    _bus, store, ctl, _topics = setup
    with pytest.raises(DeploymentStateError):
        ctl.operator_action("promote", "ops@example", "no candidate")
    ctl.start_canary("v2", T0)
    d = ctl.operator_action("pause", "ops@example", "investigating", T0 + timedelta(minutes=1))
    assert d.actor == "ops@example" and "investigating" in d.reason and store.get("policy").status == "paused"
    assert ctl.evaluate_once(T0 + timedelta(minutes=2)) is None
    ctl.operator_action("resume", "ops@example", "fine", T0 + timedelta(minutes=3))
    d = ctl.operator_action("rollback", "ops@example", "not today", T0 + timedelta(minutes=4))
    assert d.action == "rollback" and store.get("policy").candidate_version is None


def test_repeated_partials_replace_not_add(setup) -> None:
    bus, _store, ctl, topics = setup
    rng = np.random.default_rng(0)
    agg = window_aggregate(rng, "baseline", "v1", T0, 100)
    _publish(bus, topics, [agg, agg])
    ctl.poll_signals()
    assert len(ctl._aggs) == 1


def _totals(responses: int, continued: int, violations: int) -> ArmTotals:
    t = ArmTotals(
        sessions=responses // 2,
        users_assigned=responses // 2,
        users_engaged=responses // 2,
        users_active=responses // 2,
        user_turns=responses,
        user_turns_sq=responses * 2,
        responses=responses,
        continued=continued,
        instruction_following=int(responses * 0.8),
        violations=violations,
    )
    t.latency_buckets[2] = responses
    return t


def test_decide_orders_srm_breach_loss_and_collecting() -> None:
    p: dict[str, float] = {}
    a = analyse(_totals(20_000, 8000, 2000), _totals(1000, 400, 100), CONFIG, p, (20_000, 1000), 500)
    assert decide(a, CONFIG, 0, 100)[0] == "hold"  # collecting at this step
    assert decide(a, CONFIG, 0, 1000)[0] == "hold"  # guardrails not yet shown within tolerance
    a = analyse(_totals(60_000, 24_000, 6000), _totals(3000, 1200, 300), CONFIG, p, (60_000, 3000), 476)
    assert decide(a, CONFIG, 0, 3000)[0] == "advance"
    a = analyse(_totals(20_000, 8000, 2000), _totals(1000, 400, 100), CONFIG, {}, (20_000, 1500), 500)
    assert decide(a, CONFIG, 0, 1000)[0] == "halt"
    a = analyse(_totals(20_000, 8000, 2000), _totals(1000, 400, 300), CONFIG, {}, None, 500)
    assert decide(a, CONFIG, 0, 1000) == ("rollback", "guardrail breach: violation_rate")
    a = analyse(_totals(20_000, 8000, 2000), _totals(2000, 500, 200), CONFIG, {}, None, 500)
    assert decide(a, CONFIG, 0, 2000)[0] == "rollback" and "continue_rate" in decide(a, CONFIG, 0, 2000)[1]


def test_a_rollback_at_the_horizon_names_what_was_missing() -> None:
    config = CONFIG.model_copy(update={"on_inconclusive": "rollback", "horizon_factor": 0.1})
    gained = analyse(_totals(20_000, 8000, 2000), _totals(1000, 500, 100), config, {}, None, 500)
    action, reason = decide(gained, config, 0, 1000)
    assert gained.metric("continue_rate").verdict == "better" and gained.n_candidate >= gained.horizon_n
    assert action == "rollback" and reason.startswith("inconclusive at the horizon")
    # The gain was there: what held the candidate back was a guardrail not yet within tolerance.
    assert "guardrails not yet shown within tolerance (violation_rate" in reason
    assert "despite a significant gain (continue_rate)" in reason
    flat = analyse(_totals(20_000, 8000, 2000), _totals(1000, 400, 100), config, {}, None, 500)
    assert "despite" not in decide(flat, config, 0, 1000)[1]


def test_lift_summary_for_reports() -> None:
    from serving.canary import lift_summary

    a = analyse(_totals(20_000, 8000, 2000), _totals(4000, 2000, 400), CONFIG, {}, None, 500)
    s = a.summary()
    assert s["continue_rate_lift"] == pytest.approx(0.1)
    assert s["ci_low"] < 0.1 < s["ci_high"] and s["ci_low"] > 0
    assert s["depth_lift"] == pytest.approx(0.0) and s["breadth_lift"] == pytest.approx(0.0)
    assert lift_summary(a.metrics) == s


def test_admin_api_needs_the_token(setup) -> None:
    import asyncio

    import httpx
    from pydantic import SecretStr

    from serving import AdminConfig, AdminService, GatewayConfig, create_app
    from serving.gateway import Gateway
    from serving.hotswap import ModelSlots
    from tests.kits.scripted_engine import ScriptedEngine

    _bus, store, ctl, _topics = setup
    ctl.start_canary("v2")

    async def calls(token: str | None) -> list[httpx.Response]:
        admin = AdminService(AdminConfig(token=SecretStr(token) if token else None), {"policy": ctl})
        app = create_app(Gateway(GatewayConfig(), store, ModelSlots(ScriptedEngine())), admin, manage_lifecycle=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            good = {"Authorization": "Bearer s3cret"}
            return [
                await c.get("/admin/deployments"),
                await c.get("/admin/deployments", headers={"Authorization": "Bearer nope"}),
                await c.get("/admin/deployments", headers=good),
                await c.post(
                    "/admin/deployments/policy/pause", headers=good, json={"actor": "alice", "reason": "look"}
                ),
                await c.post(
                    "/admin/deployments/policy/pause", headers=good, json={"actor": "alice", "reason": "again"}
                ),
                await c.post(
                    "/admin/deployments/policy/rollback", headers=good, json={"actor": "bob", "reason": "bad"}
                ),
            ]

    disabled = asyncio.run(calls(None))
    assert disabled[2].status_code == 404 and disabled[2].json()["error"]["code"] == "admin_disabled"
    r = asyncio.run(calls("s3cret"))
    assert r[0].status_code == 401 and r[1].status_code == 401
    assert r[2].status_code == 200 and r[2].json()["deployments"][0]["state"]["candidate_version"] == "v2"
    assert r[3].status_code == 200 and r[3].json()["action"] == "pause" and r[3].json()["actor"] == "alice"
    assert r[4].status_code == 409  # already paused
    assert r[5].json()["action"] == "rollback" and r[5].json()["reason"] == "operator: bad"
    assert store.get("policy").candidate_version is None


def test_a_new_window_counter_is_one_field_and_the_canary_sums_it() -> None:
    # Adding a counter is one field in WindowCounters; a subclass stands in for that edit
    # here. The message type, its JSON Schema and the canary's totals follow from it.
    @dataclass(slots=True)
    class Counters(WindowCounters):
        thumbs_up: int = counter("Replies that got a thumbs-up.")

    @dataclass
    class Totals(ArmTotals, Counters):
        """The canary's totals over these counters, as ArmTotals is over WindowCounters."""

    aggregate = ArmWindowAggregate.counting(Counters)
    assert aggregate.model_json_schema()["properties"]["thumbs_up"]["description"] == "Replies that got a thumbs-up."
    key = {"arm": "candidate", "model_version": "v2", "window_start": T0, "window_s": 60}
    parts = [
        aggregate.of(Counters(responses=4, continued=2, thumbs_up=1), **key, partition=0),
        aggregate.of(Counters(responses=6, continued=1, thumbs_up=2), **key, partition=1),
    ]
    totals = merge([aggregate.model_validate_json(p.to_json_bytes()) for p in parts], Totals)
    assert (totals.thumbs_up, totals.responses, totals.continued) == (3, 10, 3)
    assert totals.continue_rate == 0.3
