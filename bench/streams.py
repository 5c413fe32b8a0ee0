"""Stream-processor benchmark against the local broker (deploy/local/up).

Measures, on one synthetic chat-event topic (8 partitions):
- raw_consume_events_per_s: confluent-kafka consume + json.loads, no processing (the ceiling);
- validate_consume_events_per_s: consume + schema validation (what any correct processor must pay);
- events_per_s: the signals processor in the transactional runner on Kafka (exactly-once);
- faust_events_per_s: the same processor in the Faust runner (separate process);
- quixstreams_events_per_s: the same processor driven by a Quix Streams Application,
  exactly-once (bench/quix_peer.py, a separate process in a venv of its own: see there);
- p99_event_to_signal_ms: at an offered load of 5,000 events/s, from producing the event that
  decides an outcome (next user message, session end) to reading the signal with read_committed.

The ceiling, the transactional runner and Quix Streams run in turns (--repeats rounds);
medians are reported.
The last line printed is one JSON object.  Usage: python bench/streams.py [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from statistics import median

from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import Topics, parse_chat_event  # noqa: E402
from streams import KafkaBus, KafkaSettings, TopicPartition  # noqa: E402
from streams.processors import SignalsProcessor  # noqa: E402
from streams.runners import TransactionalRunner, changelog_topic  # noqa: E402
from streams.runners.faust import faust_table_topic  # noqa: E402
from tests.kits.synthetic_traffic import synthetic_events  # noqa: E402

BOOTSTRAP = os.environ.get("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
CACHE = Path(os.environ.get("FLYWHEEL_CACHE", Path.home() / ".cache" / "flywheel"))
QUIX_REQUIREMENTS = ROOT / "requirements" / "quix.txt"

RUNNER_PROCESS = """
import sys, signal
sys.path.insert(0, {root!r})
from schemas import Topics
from streams import KafkaBus, KafkaSettings
from streams.processors import SignalsProcessor
from streams.runners import TransactionalRunner, RunnerConfig, FaustRunner
kind, ns, group = sys.argv[1:4]
cfg = RunnerConfig(faust_broker="kafka://{bootstrap}")
if kind == "faust":
    FaustRunner(SignalsProcessor(), Topics(ns), group, cfg, partitions=8).run()
    raise SystemExit
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
r = TransactionalRunner(KafkaBus(KafkaSettings(bootstrap_servers={bootstrap!r})), SignalsProcessor(), Topics(ns), group, cfg)
r.start()
while not stop:
    r.poll_once()
r.stop()
"""


def produce(bus: KafkaBus, topic: str, events: list[tuple[str | None, bytes]]) -> None:
    p = bus.producer()
    for key, value in events:
        p.produce(topic, value, key=key)
    p.flush()


def raw_consume(topic: str, n: int, validate: bool) -> float:
    c = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    c.subscribe([topic])
    seen, start = 0, None
    decode = parse_chat_event if validate else json.loads
    while seen < n:
        msgs = c.consume(10000, 1.0)
        if msgs and start is None:
            start = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                with contextlib.suppress(Exception):
                    decode(m.value())
                seen += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    c.close()
    return n / elapsed


def kafka_runner(bus: KafkaBus, topics: Topics, n: int) -> float:
    group = f"bench-kafka-{uuid.uuid4().hex[:6]}"
    runner = TransactionalRunner(bus, SignalsProcessor(), topics, group)
    runner.start()
    while runner.events_in == 0:  # group join and restore are not throughput
        runner.poll_once()
    start, first = time.perf_counter(), runner.events_in
    while runner.events_in < n:
        runner.poll_once()
    runner.commit()
    elapsed = time.perf_counter() - start
    runner.stop()
    bus.delete_topics([changelog_topic(topics, group)])
    return (n - first) / elapsed


def spawn(kind: str, ns: str, group: str, log: Path) -> subprocess.Popen[bytes]:
    code = RUNNER_PROCESS.format(root=str(ROOT), bootstrap=BOOTSTRAP)
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-c", code, kind, ns, group], stdout=sink, stderr=sink)


def committed(bus: KafkaBus, group: str, topic: str) -> int:
    c = bus.consumer(group)
    try:
        return sum(v or 0 for v in c.committed([TopicPartition(topic, p) for p in range(8)]).values())
    finally:
        c.close()


def faust_runner(bus: KafkaBus, topics: Topics, n: int, log: Path) -> float:
    group = f"bench-faust-{uuid.uuid4().hex[:6]}"
    proc = spawn("faust", topics.namespace, group, log)
    try:
        return _committed_rate(bus, group, topics.chat_events, n, proc, "Faust runner")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        bus.delete_topics([faust_table_topic(group, "signals"), f"{group}-__assignor-__leader"])


def quix_venv() -> Path:
    """The Quix Streams peer's venv (its pins clash with the project's), cached outside the
    clone and keyed by its requirements like the project's venv; created on first use."""
    digest = hashlib.sha256(QUIX_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"venv-quix-{digest}"
    if not (venv / ".installed").exists():
        uv = CACHE / "bootstrap" / "bin" / "uv"
        if not uv.exists():
            subprocess.run([sys.executable, "-m", "venv", str(CACHE / "bootstrap")], check=True)
            subprocess.run([str(CACHE / "bootstrap" / "bin" / "pip"), "install", "-q", "uv"], check=True)
        subprocess.run([str(uv), "venv", "-q", "--allow-existing", "-p", "3.11", str(venv)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--compile-bytecode", "-r", str(QUIX_REQUIREMENTS)], check=True, env=env
        )
        (venv / ".installed").touch()
    return venv


def quix_runner(bus: KafkaBus, topics: Topics, n: int, log: Path) -> float:
    """Events/s of the Quix Streams peer over the first ``n`` events of ``topics.chat_events``,
    from its first committed offsets (group join and topic set-up are not throughput)."""
    group = f"bench-quix-{uuid.uuid4().hex[:6]}"
    python = quix_venv() / "bin" / "python"
    state_dir = tempfile.mkdtemp(prefix="bench-quix-")
    args = [BOOTSTRAP, topics.namespace, group, str(bus.partitions(topics.chat_events)), state_dir]
    with log.open("ab") as sink:
        proc = subprocess.Popen([str(python), str(ROOT / "bench" / "quix_peer.py"), *args], stdout=sink, stderr=sink)
    try:
        return _committed_rate(bus, group, topics.chat_events, n, proc, "Quix Streams peer")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        # Quix's state changelog topic, named by its convention.
        bus.delete_topics([f"changelog__{group}--{topics.chat_events}--default"])
        shutil.rmtree(state_dir, ignore_errors=True)


def _committed_rate(bus: KafkaBus, group: str, topic: str, n: int, proc: subprocess.Popen[bytes], what: str) -> float:
    """Events/s from the first committed offsets of ``group`` until ``n`` are committed."""
    t0 = n0 = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} (see the runners' log)")
        done = committed(bus, group, topic)
        if done and t0 is None:
            t0, n0 = time.perf_counter(), done
        if done >= n:
            return (n - (n0 or 0)) / (time.perf_counter() - (t0 or time.perf_counter()))
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not finish")


def latency(bus: KafkaBus, rate: int, seconds: float, log: Path) -> dict[str, float]:
    """p50/p99 from producing a deciding event to reading its signal, at ``rate`` events/s."""
    topics = Topics(f"bench-lat-{uuid.uuid4().hex[:6]}")
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-runner"
    proc = spawn("kafka", topics.namespace, group, log)
    events = synthetic_events(
        int(rate * seconds), seed=21, bad_share=0.0, span_s=seconds
    )  # event times close to the offered load
    sent: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def read() -> None:
        c = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": f"bench-read-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        c.subscribe([topics.engagement_signals])
        while not done.is_set():
            for m in c.consume(1000, 0.05):
                if m.error() is not None:
                    continue
                now = time.perf_counter()
                doc = json.loads(m.value())
                if doc.get("finalized_by") == "next_message":
                    t = sent.get((doc["conversation_id"], doc["turn"] + 1))
                    if t is not None:
                        latencies.append((now - t) * 1000)
        c.close()

    try:
        time.sleep(8)  # the runner process joins its group before the load starts
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(2)
        p = bus.producer()
        start = time.perf_counter()
        batch = max(1, rate // 200)
        for i in range(0, len(events), batch):
            target = start + i / rate
            while (delay := target - time.perf_counter()) > 0:
                time.sleep(delay)
            stamp = time.perf_counter()
            for key, value in events[i : i + batch]:
                doc = json.loads(value)
                if doc["type"] == "user_message":
                    sent[(doc["conversation_id"], doc["turn"])] = stamp
                p.produce(topics.chat_events, value, key=key)
        p.flush()
        time.sleep(3)
    finally:
        done.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        bus.delete_topics([t.name for t in topics.specs()] + [changelog_topic(topics, group)])
    latencies.sort()
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)], "n": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--faust-events", type=int, default=30_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of ceiling + runner (medians are reported)")
    args = parser.parse_args()
    bus = KafkaBus(KafkaSettings(bootstrap_servers=BOOTSTRAP, linger_ms=5))
    log = Path(tempfile.mkdtemp(prefix="bench-streams-")) / "runners.log"
    topics = Topics(f"bench-{uuid.uuid4().hex[:6]}")
    bus.create_topics(topics.specs())
    try:
        events = synthetic_events(args.events, seed=1)
        produce(bus, topics.chat_events, events)
        n = len(events)
        # The ceiling and the runner take turns, so that a slow spell of this shared machine
        # touches both; medians.
        raws, validateds, kafkas, quixes = [], [], [], []
        for i in range(args.repeats):
            raws.append(raw_consume(topics.chat_events, n, validate=False))
            validateds.append(raw_consume(topics.chat_events, n, validate=True))
            kafkas.append(kafka_runner(bus, topics, n))
            quixes.append(quix_runner(bus, topics, n, log))
            print(
                f"round {i + 1}: raw consume+json {raws[-1]:,.0f} ev/s; consume+validate {validateds[-1]:,.0f} ev/s; "
                f"transactional runner (signals, exactly-once) {kafkas[-1]:,.0f} ev/s ({kafkas[-1] / raws[-1]:.2f} "
                f"of raw); Quix Streams (signals, exactly-once) {quixes[-1]:,.0f} ev/s",
                flush=True,
            )
        raw, validated, kafka, quix = median(raws), median(validateds), median(kafkas), median(quixes)
        faust_topics = Topics(f"bench-f-{uuid.uuid4().hex[:6]}")
        bus.create_topics(faust_topics.specs())
        produce(bus, faust_topics.chat_events, events[: args.faust_events])
        faust = faust_runner(bus, faust_topics, min(n, args.faust_events), log)
        bus.delete_topics([t.name for t in faust_topics.specs()])
        print(f"faust runner (signals, at-least-once): {faust:,.0f} ev/s", flush=True)
        lat = latency(bus, args.rate, 10.0, log)
        print(
            f"event→signal at {args.rate} ev/s: p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms ({lat['n']} signals)",
            flush=True,
        )
    finally:
        bus.delete_topics([t.name for t in topics.specs()])
    result = {
        "events": n,
        "runner": "kafka",
        "processor": "signals",
        "exactly_once": True,
        "events_per_s": round(kafka),
        "raw_consume_events_per_s": round(raw),
        "validate_consume_events_per_s": round(validated),
        "faust_events_per_s": round(faust),
        "faust_events": min(n, args.faust_events),
        "ratio_to_raw": round(kafka / raw, 3),
        "ratio_to_raw_per_round": [round(k / r, 3) for k, r in zip(kafkas, raws, strict=False)],
        "repeats": args.repeats,
        "ratio_to_validate": round(kafka / validated, 3),
        "ratio_to_faust": round(kafka / faust, 2),
        "quixstreams_events_per_s": round(quix),
        "quixstreams_events_per_s_per_round": [round(q) for q in quixes],
        "ratio_to_quixstreams": round(kafka / quix, 2),
        "offered_load_events_per_s": args.rate,
        "p50_event_to_signal_ms": round(lat["p50"], 1),
        "p99_event_to_signal_ms": round(lat["p99"], 1),
        "cpu_cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
