"""Settings shared by the stream runners."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.dlq_config import DeadLetterConfig
from streams.processors import BufferConfig, CurationConfig, SignalsConfig
from streams.runners._routing import Partitioner


class RunnerConfig(BaseModel):
    """How a runner drives a processor. ``FLYWHEEL_STREAMS__RUNNER__<FIELD>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commit_interval_s: float = Field(
        default=0.1,
        gt=0,
        description="Outputs, state changelog and consumer offsets "
        "are committed together (one transaction) at most this often.",
    )
    max_batch: int = Field(default=5000, gt=0, description="Most records consumed in one poll.")
    poll_timeout_s: float = Field(default=0.1, gt=0, description="Longest wait for records in one poll.")
    instance_id: str = Field(
        default="0",
        min_length=1,
        description="Stable id of this process within its consumer "
        "group; a restarted process with the same id fences its predecessor's open transaction.",
    )
    transaction_timeout_ms: int = Field(
        default=15_000,
        ge=1000,
        description="Broker aborts a transaction left open longer than this (a crashed process that is not restarted).",
    )
    lag_interval_s: float = Field(default=5.0, gt=0, description="How often consumer lag is measured.")
    wall_clock_interval_s: float = Field(
        default=1.0, gt=0, description="How often the processor's wall-clock timers run (buffer age triggers)."
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Serve /metrics on this port; 0 = do not.")
    faust_checkpoint_every: int = Field(
        default=2000,
        gt=0,
        description="Faust runner: persist state and ack "
        "records after this many records of a partition (and on a timer).",
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        description="A crashed process leaves its group after "
        "this long and its partitions move on (the broker's minimum is 6 s).",
    )
    faust_broker: str = Field(default="kafka://127.0.0.1:19092", description="Broker URL of the Faust runner.")
    partitioner: Partitioner = Field(
        default="murmur2",
        description="How the producers of the input topics partition keys. A record whose key hashes to "
        "another partition is dead-lettered as misrouted (its key's state lives elsewhere). murmur2: Java "
        "clients, aiokafka, Faust, flywheel's producers, librdkafka with partitioner=murmur2_random; crc32: "
        "librdkafka's default (consistent_random); off: no check (e.g. to replay across a partition-count change).",
    )


class StreamsSettings(BaseModel):
    """Every stream-processing setting: ``FLYWHEEL_STREAMS__RUNNER__COMMIT_INTERVAL_S``,
    ``FLYWHEEL_STREAMS__SIGNALS__WINDOW_S``, ``FLYWHEEL_STREAMS__BUFFER__MIN_SAMPLES``…"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="How runners drive processors.")
    signals: SignalsConfig = Field(default_factory=SignalsConfig, description="Engagement-signals processor.")
    curation: CurationConfig = Field(default_factory=CurationConfig, description="Sample-curation processor.")
    buffer: BufferConfig = Field(default_factory=BufferConfig, description="Sample buffer / training-job trigger.")
    dlq: DeadLetterConfig = Field(
        default_factory=DeadLetterConfig,
        description="Dead letters of every writer: the runners, the SDK and `flywheel produce`.",
    )
