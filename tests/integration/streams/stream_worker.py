"""A stream-runner process for the crash and parity tests (killed with SIGKILL on purpose).

Builds the runner directly rather than through the `flywheel` CLI so that a restart
costs a second of imports, not the whole platform's.

    python stream_worker.py kafka|faust <processor> <namespace> <group> [exit_when_idle_s]

``STREAM_WORKER_CONFIG`` (JSON) is the processor's config (e.g. ``{"max_age_s": 2}``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from schemas import Topics
from streams import KafkaBus, KafkaSettings
from streams.processors import (
    BufferConfig,
    BufferProcessor,
    CurationConfig,
    CurationProcessor,
    SignalsConfig,
    SignalsProcessor,
)
from streams.runners import FaustRunner, RunnerConfig, TransactionalRunner

PROCESSORS = {
    "signals": (SignalsProcessor, SignalsConfig),
    "curation": (CurationProcessor, CurationConfig),
    "buffer": (BufferProcessor, BufferConfig),
}


def main() -> None:
    runner, name, namespace, group = sys.argv[1:5]
    idle_s = float(sys.argv[5]) if len(sys.argv) > 5 else None
    bootstrap = os.environ.get("FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    topics = Topics(namespace)
    processor_type, config_type = PROCESSORS[name]
    processor = processor_type(config_type.model_validate_json(os.environ.get("STREAM_WORKER_CONFIG", "{}")))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    config = RunnerConfig(
        faust_broker=f"kafka://{bootstrap}", faust_checkpoint_every=500, commit_interval_s=0.05, session_timeout_s=6.0
    )
    if runner == "faust":
        FaustRunner(processor, topics, group, config, partitions=8).run()
        return
    loop = TransactionalRunner(
        KafkaBus(KafkaSettings(bootstrap_servers=bootstrap, linger_ms=5)), processor, topics, group, config
    )
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    loop.start()
    idle_since = time.monotonic()
    while not stopping:
        if loop.poll_once():
            idle_since = time.monotonic()
        elif idle_s is not None and time.monotonic() - idle_since >= idle_s:
            break
    loop.stop()


if __name__ == "__main__":
    main()
