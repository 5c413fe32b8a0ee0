"""Three real gateway processes (``flywheel serve``'s stack and serve loop, each with its
own scripted engine) on the real Kafka and Redis: one leads; the leader is killed
mid-canary (SIGKILL) and a replica starts late. A new leader takes over, continues the
same experiment from the shared bookkeeping (no burn-in skipped, the same per-step
count), every replica serves both arms under the right labels, the shared request
counts cover every replica, and each decision is the one a single controller takes on
the same signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from schemas import ArmWindowAggregate, CanaryDecision, DeploymentState, Topics, deployment_record_adapter
from serving import CanaryConfig, CanaryController, MemoryRoutingStore, RedisRoutingStore
from serving.canary._experiment import Experiment
from serving.leader import RedisLease
from serving.routing import arm_for
from streams import EmbeddedBus, KafkaBus, KafkaSettings, TopicPartition
from tests._serving import manifest_for, window_aggregate
from tests._wait import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[3]
LEASE_TTL_S = 2.0
RENEW_S = 0.5
TOLERANCE = {
    "violation_rate": 0.2,
    "instruction_following_rate": 0.2,
    "error_rate": 1.0,
    "latency_over_baseline_p95": 0.2,
}
CANARY = {
    "steps_bp": [500, 2000, 10_000],
    "burn_in_s": 1,
    "min_samples_per_step": 300,
    "mde": {"continue_rate": 0.05, "depth": 0.5, "breadth": 0.05},
    "tolerance": TOLERANCE,
    "poll_interval_s": 0.2,
}


class Replica:
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self.out = logs / f"{name}.out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kits.scripted_serve"],
            cwd=ROOT,
            env={**env, "FLYWHEEL_SERVING__LEADER__REPLICA_ID": name},
            stdout=self.out.open("w"),
            stderr=self.log.open("w"),
        )
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:

            def port() -> str | None:
                assert self.proc.poll() is None, f"{self.name} exited: {self.tail()}"
                line = self.out.read_text().partition("\n")[0]
                return line.split()[1] if line.startswith("port ") else None

            self._url = f"http://127.0.0.1:{wait_until(port, 60, what=f'{self.name} to bind its port')}"
        return self._url

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited: {self.tail()}"
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def replicas(env: dict[str, str], logs: Path) -> Iterator[Callable[[str], Replica]]:
    started: list[Replica] = []

    def start(name: str) -> Replica:
        started.append(Replica(name, env, logs))
        return started[-1]

    try:
        yield start
    except BaseException:
        for r in started:
            print(f"--- {r.name} ---\n{r.tail()}")
        raise
    finally:
        for r in started:
            r.stop()


def users_by_arm(state: DeploymentState, per_arm: int = 15) -> dict[str, list[str]]:
    """User ids in each arm under ``state`` (found by their bucket, so both arms are covered)."""
    found: dict[str, list[str]] = {"baseline": [], "candidate": []}
    i = 0
    while min(len(v) for v in found.values()) < per_arm:
        user = f"user-{i}"
        arm = arm_for(state.experiment_salt, user, state.share_bp)
        if len(found[arm]) < per_arm:
            found[arm].append(user)
        i += 1
    return found


def serve_both_arms(replica: Replica, state: DeploymentState) -> int:
    """Every user gets their arm's version, labelled as that arm, with that version's reply."""
    sent = 0
    versions = {"baseline": state.baseline_version, "candidate": state.candidate_version}
    with httpx.Client(base_url=replica.url, timeout=10) as client:
        for arm, users in users_by_arm(state).items():
            for user in users:
                r = client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "policy",
                        "user": user,
                        "max_tokens": 2,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                )
                assert r.status_code == 200, (replica.name, r.text)
                assert (r.headers["x-flywheel-arm"], r.headers["x-flywheel-model-version"]) == (arm, versions[arm])
                assert r.json()["choices"][0]["message"]["content"].startswith(f"{versions[arm]}:w0")
                sent += 1
    return sent


def window(
    rng: np.random.Generator, state: DeploymentState, start: datetime, users: int, window_s: int = 1, boost: float = 0.0
) -> list[ArmWindowAggregate]:
    """One window of both arms, ``users`` split by the share; the candidate continues more
    often (``boost`` more again: young conversations right after a change). The candidate's
    record comes first: a controller that has read only part of it sees no new data."""
    n_c = int(rng.binomial(users, state.share_bp / 10_000))
    return [
        window_aggregate(rng, "candidate", "v2", start, n_c, window_s=window_s, p_continue=0.6 + boost, partition=1),
        window_aggregate(rng, "baseline", "v1", start, users - n_c, window_s=window_s, partition=0),
    ]


def next_second(t: datetime) -> datetime:
    whole = t.replace(microsecond=0)
    return whole + timedelta(seconds=1) if t.microsecond else whole


def decisions_on(bus: KafkaBus, topics: Topics, consumer_box: list) -> list[CanaryDecision]:
    if not consumer_box:
        consumer = bus.consumer()
        consumer.assign(
            {
                TopicPartition(topics.serving_deployments, p): 0
                for p in range(bus.partitions(topics.serving_deployments))
            }
        )
        consumer_box.extend([consumer, []])
    consumer, seen = consumer_box
    for record in consumer.consume(1000, 0.1):
        parsed = deployment_record_adapter.validate_json(record.value)
        if isinstance(parsed, CanaryDecision):
            seen.append(parsed)
    return seen


def test_leader_dies_mid_canary_and_the_fleet_carries_on(
    kafka_settings: KafkaSettings, redis_url: str, topics: Topics, unique: Callable[[str], str], tmp_path: Path
) -> None:
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    prefix = unique("flywheel-test-replicas")
    store = RedisRoutingStore(redis_url, prefix=prefix, refresh_s=0)
    lease = RedisLease(redis_url, prefix, "policy", "test", LEASE_TTL_S)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(
        {
            "FLYWHEEL_BUS": "kafka",
            "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "FLYWHEEL_REDIS_URL": redis_url,
            "FLYWHEEL_TOPIC_NAMESPACE": topics.namespace,
            "FLYWHEEL_LOG_LEVEL": "INFO",
            "FLYWHEEL_SERVING__ROUTING_PREFIX": prefix,
            "FLYWHEEL_SERVING__LEADER__LEASE_TTL_S": str(LEASE_TTL_S),
            "FLYWHEEL_SERVING__LEADER__RENEW_INTERVAL_S": str(RENEW_S),
            "FLYWHEEL_SERVING__HOTSWAP__POLL_INTERVAL_S": "0.2",
            "FLYWHEEL_SERVING__HOTSWAP__REPORT_TTL_S": "2",
            "FLYWHEEL_SERVING__REQUEST_COUNTS_INTERVAL_S": "0.2",
            **{f"FLYWHEEL_SERVING__CANARY__{k.upper()}": json.dumps(v) for k, v in CANARY.items()},
        }
    )
    producer = bus.producer()
    box: list = []
    rng = np.random.default_rng(7)
    try:
        with replicas(env, tmp_path) as start:
            fleet = {name: start(name) for name in ("r1", "r2")}

            def publish(version: str, parent: str | None, age_s: float) -> None:
                mf = manifest_for(None, version, parent=parent, age_s=age_s)
                producer.produce(topics.models_checkpoints, mf.to_json_bytes(), key=version)
                producer.flush(10)

            publish("v1", None, 60)
            wait_until(
                lambda: (s := store.get("policy")) is not None and s.baseline_version == "v1", 60, what="v1 deployed"
            )
            publish("v2", "v1", 30)
            opened = wait_until(
                lambda: (s := store.get("policy")) is not None and s.status == "canary" and s,
                60,
                what="the canary of v2 to open",
            )
            first_leader = lease.current_holder()
            assert first_leader is not None
            leader_name, first_token = first_leader.rsplit(":", 1)[0], int(first_leader.rsplit(":", 1)[1])
            assert opened.fencing_token == first_token
            # The canary opened only once both replicas had v2: both serve both arms now.
            sent = sum(
                serve_both_arms(r, opened) for r in fleet.values() if wait_until(r.ready, 30, what=f"{r.name} ready")
            )

            # The guardrail's counts are the fleet's: every replica's requests, summed in Redis.
            def shared_total() -> bool:
                return sum(store.request_counts("policy").values()) == sent

            wait_until(shared_total, 10, what=f"the shared request counts to reach {sent}")

            # Step 0: a window in the burn-in (the candidate looks far better: young conversations),
            # then a settled one with enough candidate replies (about 450 of 300) to advance. It
            # must be over before the advance, or it would fall in the next step's burn-in.
            t_open = Experiment.from_json(store.experiment("policy") or "").changes[0]
            s0 = next_second(t_open)
            wait_until(lambda: datetime.now(UTC) > s0 + timedelta(seconds=3), 10, what="step 0's windows to pass")
            step0 = window(rng, opened, s0, 3000, boost=0.3) + window(rng, opened, s0 + timedelta(seconds=1), 3000, 2)
            for agg in step0:
                producer.produce(topics.engagement_signals, agg.to_json_bytes(), key="aggregates")
            producer.flush(10)
            advanced = wait_until(
                lambda: (s := store.get("policy")).step_index == 1 and s, 30, what="the leader to advance to step 1"
            )
            t_advance = Experiment.from_json(store.experiment("policy") or "").changes[-1]

            # Kill the leader mid-canary; a third replica starts late.
            killed_at = time.monotonic()
            fleet[leader_name].proc.send_signal(signal.SIGKILL)
            fleet[leader_name].proc.wait(10)
            fleet["r3"] = start("r3")

            def new_leader() -> str | None:
                holder = lease.current_holder()
                return holder if holder is not None and not holder.startswith(f"{leader_name}:") else None

            holder = wait_until(new_leader, 30, every_s=0.05, what="a new leader")
            takeover_s = time.monotonic() - killed_at
            print(f"takeover after {takeover_s:.2f} s (lease TTL {LEASE_TTL_S} s, renew every {RENEW_S} s)")
            new_token = int(holder.rsplit(":", 1)[1])
            assert new_token == first_token + 1
            for r in fleet.values():
                if r.name != leader_name:
                    wait_until(r.ready, 60, what=f"{r.name} ready with both arms")
                    serve_both_arms(r, advanced)  # the late replica loaded baseline and candidate

            # Step 1 under the new leader: a window in the burn-in after the advance (far more than
            # the per-step minimum, and far better), a settled one below the minimum (about 180 of
            # 300 candidate replies): hold; then one that completes it: promote.
            s1 = next_second(t_advance)
            step1a = window(rng, advanced, s1, 3000, boost=0.3) + window(rng, advanced, s1 + timedelta(seconds=1), 300)
            step1b = window(rng, advanced, s1 + timedelta(seconds=2), 2000)
            for agg in step1a:
                producer.produce(topics.engagement_signals, agg.to_json_bytes(), key="aggregates")
            producer.flush(10)
            counted = step1a[2].responses  # the settled candidate window only
            collecting = f"collecting: {counted}/{CANARY['min_samples_per_step']} candidate responses at this step"
            wait_until(
                lambda: any(
                    d.reason == collecting and d.fencing_token == new_token for d in decisions_on(bus, topics, box)
                ),
                30,
                what=f"the new leader to hold, {collecting}",
            )
            for agg in step1b:
                producer.produce(topics.engagement_signals, agg.to_json_bytes(), key="aggregates")
            producer.flush(10)
            final = wait_until(lambda: (s := store.get("policy")).status == "idle" and s, 30, what="the canary to end")
            assert final.baseline_version == "v2" and final.fencing_token == new_token

        # The same signals through one controller in one process, with the fleet's change times.
        ref_bus = EmbeddedBus()
        ref_bus.create_topics(topics.specs())
        ref = CanaryController(CanaryConfig(**CANARY), "policy", MemoryRoutingStore(), ref_bus, topics)
        ref.bootstrap("v1", t_open)
        ref.start_canary("v2", t_open)
        ref_producer = ref_bus.producer()
        reference = []
        for batch, at in ((step0, t_advance), (step1a, t_advance), (step1b, t_advance)):
            for agg in batch:
                ref_producer.produce(topics.engagement_signals, agg.to_json_bytes(), key=agg.arm)
            reference.append(ref.evaluate_once(at))
        ref.close()
        fleet_decisions = [
            (d.action, d.share_bp_after, d.reason) for d in decisions_on(bus, topics, box) if d.action not in ("hold",)
        ]
        ref_decisions = [(d.action, d.share_bp_after, d.reason) for d in [*ref.decisions] if d.action != "hold"]
        assert fleet_decisions == ref_decisions, (fleet_decisions, ref_decisions)
        assert [d.action for d in reference] == ["advance", "hold", "promote"] and reference[1].reason == collecting
        tokens = [d.fencing_token for d in decisions_on(bus, topics, box) if d.action != "hold"]
        assert tokens == sorted(tokens) and tokens[-1] == new_token  # the old leader decided up to the advance
    finally:
        if box:
            box[0].close()
        store.delete_all()
        store.close()
        lease.close()
        bus.delete_topics(t.name for t in topics.specs())
        bus.close()
