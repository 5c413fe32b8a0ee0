"""Wall-clock timers in the Faust runner: the buffer's age trigger fires with no new records.

(The Kafka runner's tick is the same ``advance`` call the embedded runner makes; the unit
tests cover the trigger itself.)"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streams_helpers import produce, read_all, start_worker

from schemas import Topics, TrainJobRequest, parse_message
from streams import KafkaBus, KafkaSettings, Record
from streams.runners.faust import faust_table_topic
from tests._wait import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(180)]


def _sft_sample(i: int) -> bytes:
    return json.dumps(
        {
            "kind": "sft",
            "schema_version": 1,
            "sample_id": f"s{i}",
            "conversation_id": f"c{i}",
            "character_id": "ch",
            "context": [{"role": "user", "content": "hi"}],
            "instructions": [],
            "ts": datetime(2026, 1, 5, tzinfo=UTC).isoformat(),
            "response": "hello there",
            "model_version": "v1",
        }
    ).encode()


def test_faust_buffer_age_trigger_requests_a_job_for_few_old_samples(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    runner = "faust"
    bus = KafkaBus(kafka_settings)
    bus.create_topics(topics.specs())
    group = f"{topics.namespace}-buffer-{runner}"
    log = tmp_path / "worker.log"
    try:
        produce(bus, topics.samples_sft, [(f"c{i}", _sft_sample(i)) for i in range(5)])
        # Far below the count threshold: only the age of the oldest sample can trigger.
        worker = start_worker(
            runner, topics.namespace, group, log, processor="buffer", config={"min_samples": 1000, "max_age_s": 2.0}
        )
        try:

            def jobs_requested() -> list[Record]:
                assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{log.read_text()[-3000:]}"
                return read_all(bus, topics.trainer_jobs, 1)

            jobs = wait_until(jobs_requested, 120, every_s=0.5, what="the buffer's age trigger to request a job")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        assert len(jobs) == 1, log.read_text()[-3000:]
        job = parse_message(TrainJobRequest, jobs[0].value)
        assert job.kind == "sft"
        assert sum(r.to_offset - r.from_offset for r in job.inputs) == 5
    finally:
        bus.delete_topics([t.name for t in topics.specs()] + [faust_table_topic(group, "buffer")])
