"""The hot-swap controller: follows ``models.checkpoints`` and brings new versions in.

For a published checkpoint that passed the offline gate: load it into the candidate
slot, warm it up and health-check it with real completions, then ask the deployment
controller to open the canary. A checkpoint that fails to load or to answer is never
routed to: it is recorded as a ``reject`` decision on ``serving.deployments`` and counted.

Swaps are atomic for new requests (each request reads one routing state and leases the
version it names); in-flight requests finish on the version they started on; a version
no longer named by the routing state is unloaded after a grace period, once nothing is
in flight on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from schemas import CheckpointManifest, SchemaError, ServingError, Topics
from serving import _metrics as m
from serving._errors import ModelLoadError
from serving.canary.controller import CanaryController
from serving.engines.base import GenerationRequest, ModelSource, SamplingParams, complete
from serving.hotswap.hotswap_config import HotSwapConfig
from serving.hotswap.slots import ModelSlots
from streams import Bus, Consumer, TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapEvent:
    """What one poll did: ``kind`` is loaded, bootstrapped, rejected, unloaded, reconciled or skipped."""

    kind: str
    version: str
    detail: str = ""


class HotSwapController:
    def __init__(
        self,
        config: HotSwapConfig,
        model: str,
        slots: ModelSlots,
        canary: CanaryController,
        bus: Bus | None,
        topics: Topics,
        source_for: Callable[[CheckpointManifest], ModelSource] = ModelSource.from_manifest,
    ) -> None:
        self.config = config
        self.model = model
        self.slots = slots
        self.canary = canary
        self.topics = topics
        self._bus = bus
        self._consumer: Consumer | None = None
        self._source_for = source_for
        self._manifests: dict[str, CheckpointManifest] = {}
        self._pending: list[str] = []
        self._done: set[str] = set()
        self._unreferenced_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._reconciled_at: float | None = None
        self.bad_manifests = 0

    # -- input ------------------------------------------------------------------------
    def offer(self, manifest: CheckpointManifest) -> None:
        """Take one manifest (what polling models.checkpoints does for each record)."""
        if manifest.model != self.model:
            return
        self._manifests[manifest.version] = manifest
        if manifest.status != "published":
            if manifest.version in self._pending:
                self._pending.remove(manifest.version)
            return
        if self.config.require_gate and not (manifest.eval is not None and manifest.eval.passed):
            self._done.add(manifest.version)
            return
        if manifest.version not in self._done and manifest.version not in self._pending:
            self._pending.append(manifest.version)

    def _read_checkpoints(self) -> None:
        if self._bus is None:
            return
        topic = self.topics.models_checkpoints
        if self._consumer is None:
            self._consumer = self._bus.consumer(**{"auto.offset.reset": "earliest"})
            self._consumer.assign({TopicPartition(topic, p): 0 for p in range(self._bus.partitions(topic))})
        while True:
            records = self._consumer.consume(1000, 0.0)
            for record in records:
                try:
                    self.offer(CheckpointManifest.model_validate_json(record.value))
                except (ValidationError, SchemaError):
                    self.bad_manifests += 1
            if len(records) < 1000:
                return

    # -- the step -----------------------------------------------------------------------
    async def poll_once(self, now: datetime | None = None) -> list[SwapEvent]:
        """Read new manifests, load at most one new version, unload what is no longer routed."""
        events: list[SwapEvent] = []
        self._read_checkpoints()
        state = self.canary.state()
        retired = [v for v, mf in self._manifests.items() if mf.status != "published"]
        if state is not None and state.candidate_version in retired and state.status != "idle":
            self.canary.operator_action(
                "rollback", "hotswap", f"checkpoint {state.candidate_version} was withdrawn", now
            )
            state = self.canary.state()
        if state is not None and state.baseline_version and not self.slots.is_ready(state.baseline_version):
            # A restarted gateway: bring back what the routing state names.
            events += await self._restore(state.baseline_version)
        newest = self._next_candidate()
        if newest is not None:
            self._pending.remove(newest)
            self._done.add(newest)
            if state is None or state.baseline_version is None:
                ok, detail = await self._bring_in(newest)
                if ok:
                    self.canary.bootstrap(newest, now)
                    events.append(SwapEvent("bootstrapped", newest))
                else:
                    self.canary.reject(newest, detail, now)
                    events.append(SwapEvent("rejected", newest, detail))
            elif state.status == "idle" and state.candidate_version is None:
                ok, detail = await self._bring_in(newest)
                if ok:
                    self.canary.start_canary(newest, now)
                    events.append(SwapEvent("loaded", newest))
                else:
                    self.canary.reject(newest, detail, now)
                    events.append(SwapEvent("rejected", newest, detail))
        events += await self._unload_unrouted()
        events += await self._reconcile()
        return events

    async def _reconcile(self) -> list[SwapEvent]:
        """Every ``reconcile_interval_s``: replicas that lost loaded versions get them back."""
        now = time.monotonic()
        if self._reconciled_at is not None and now - self._reconciled_at < self.config.reconcile_interval_s:
            return []
        self._reconciled_at = now
        fixed = await self.slots.engine.reconcile()
        for url, version in fixed:
            log.info("re-applied %s on replica %s", version, url)
            m.SWAPS.labels(self.model, "reconciled").inc()
        return [SwapEvent("reconciled", version, url) for url, version in fixed]

    def _next_candidate(self) -> str | None:
        """The newest pending version, once no experiment is running; older pending ones are skipped."""
        st = self.canary.state()
        if st is not None and (st.candidate_version is not None or st.status != "idle"):
            return None
        if not self._pending:
            return None
        baseline_ts = None
        if st is not None and st.baseline_version in self._manifests:
            baseline_ts = self._manifests[st.baseline_version].created_ts
        fresh = [v for v in self._pending if baseline_ts is None or self._manifests[v].created_ts > baseline_ts]
        for stale in set(self._pending) - set(fresh):
            self._pending.remove(stale)
            self._done.add(stale)
        if not fresh:
            return None
        return max(fresh, key=lambda v: self._manifests[v].created_ts)

    async def _restore(self, version: str) -> list[SwapEvent]:
        manifest = self._manifests.get(version)
        if manifest is None:
            return []
        ok, detail = await self._bring_in(version)
        return [SwapEvent("loaded" if ok else "rejected", version, detail)]

    async def _bring_in(self, version: str) -> tuple[bool, str]:
        """Load, warm up, health-check. (True, "") or (False, why). Never raises for a bad checkpoint."""
        source = self._source_for(self._manifests[version])
        try:
            await self.slots.engine.load(source)
            await asyncio.wait_for(self._health_check(version), self.config.health_timeout_s)
        except (TimeoutError, ServingError) as exc:
            detail = str(exc) or f"health check timed out after {self.config.health_timeout_s:.0f}s"
            log.warning("checkpoint %s rejected: %s", version, detail)
            m.SWAPS.labels(self.model, "rejected").inc()
            with contextlib.suppress(ServingError):
                await self.slots.engine.unload(version)
            return False, detail
        self.slots.mark_ready(version)
        m.SWAPS.labels(self.model, "loaded").inc()
        return True, ""

    async def _health_check(self, version: str) -> None:
        """Real completions: the first one is also the warm-up."""
        for i, prompt in enumerate(self.config.health_prompts):
            request = GenerationRequest(
                f"health-{version}-{i}",
                ({"role": "user", "content": prompt},),
                SamplingParams(max_tokens=self.config.health_max_tokens, temperature=0.0),
            )
            reply = await complete(self.slots.engine, version, request)
            if not reply.text.strip() or reply.finish_reason is None:
                raise ModelLoadError(
                    f"checkpoint {version}: health check got an empty reply to {prompt!r}", version=version
                )

    async def _unload_unrouted(self) -> list[SwapEvent]:
        state = self.canary.state()
        routed = {state.baseline_version, state.candidate_version} if state is not None else set()
        now = time.monotonic()
        events = []
        for version in self.slots.ready() + [v for v in self._unreferenced_since if not self.slots.is_ready(v)]:
            if version in routed:
                self._unreferenced_since.pop(version, None)
                if not self.slots.is_ready(version) and version in self.slots.engine.versions():
                    self.slots.mark_ready(version)  # routed again (e.g. resumed) before it was unloaded
                continue
            since = self._unreferenced_since.setdefault(version, now)
            if now - since < self.config.unload_grace_s:
                continue
            if self.slots.retire(version):  # no new leases; unload once the last in-flight request is done
                await self.slots.unload(version)
                self._unreferenced_since.pop(version, None)
                m.SWAPS.labels(self.model, "unloaded").inc()
                events.append(SwapEvent("unloaded", version))
        return events

    # -- background loop (flywheel serve) ---------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once(datetime.now(UTC))
            except Exception:  # a bad poll must not stop the controller
                log.exception("hot-swap poll failed")
            await asyncio.sleep(self.config.poll_interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
