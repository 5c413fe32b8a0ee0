"""The hot-swap controller: follows ``models.checkpoints`` and brings new versions in.

For a published checkpoint that passed the offline gate: load it into the candidate
slot, warm it up and health-check it with real completions, then ask the deployment
controller to open the canary. A checkpoint that fails to load or to answer is never
routed to: it is recorded as a ``reject`` decision on ``serving.deployments`` and counted.

Swaps are atomic for new requests (each request reads one routing state and leases the
version it names); in-flight requests finish on the version they started on; a version
no longer named by the routing state is unloaded after a grace period, once nothing is
in flight on it.

With several replicas, every replica follows: it loads what the shared routing state
names (baseline, candidate, and the version being prepared), also when it starts in the
middle of a canary, and reports what it has ready. Only the leader decides: it loads a
new version, marks it as being prepared, and opens the canary once every live replica
reports it ready (or rejects it if one could not load it), so no replica is asked to
serve a candidate it does not have.
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
from serving._errors import ModelLoadError, NotLeaderError, StaleLeaderError
from serving.canary.controller import CanaryController
from serving.engines.base import GenerationRequest, ModelSource, SamplingParams, complete
from serving.hotswap.hotswap_config import HotSwapConfig
from serving.hotswap.slots import ModelSlots
from serving.routing import ReplicaReport
from streams import Bus, Consumer, TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapEvent:
    """What one poll did: ``kind`` is loaded, bootstrapped, rejected, unloaded, reconciled,
    preparing (the leader waits for replicas to load a candidate) or followed (this replica
    loaded a version the shared state names)."""

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
        self._failed: dict[str, tuple[str, float]] = {}  # version -> (why, when) it failed to load here
        self._preparing_since: tuple[str, float] | None = None
        self.replica = canary.leadership.holder if canary.leadership is not None else "local"
        self.base: str | None = None
        """A version this replica loaded at start (``flywheel serve --model-dir``): the leader
        deploys it as the first baseline when nothing is deployed yet."""
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
        """Read new manifests, load what the routing state names; as leader, bring in at most
        one new version; unload what is no longer routed."""
        self._read_checkpoints()
        events = await self._follow()
        if self.canary.is_leader():
            try:
                events += await self._lead(now)
            except (NotLeaderError, StaleLeaderError) as exc:  # lost the lease mid-poll: the new leader goes on
                log.info("hot-swap decision dropped: %s", exc)
        events += await self._unload_unrouted()
        events += await self._reconcile()
        return events

    # -- every replica ----------------------------------------------------------------------
    def _wanted(self) -> list[str]:
        """Versions this replica must have: those the routing state names, and the one being prepared."""
        state = self.canary.state()
        wanted = [state.baseline_version, state.candidate_version] if state is not None else []
        wanted.append(self.canary.store.preparing(self.model))
        return [v for v in dict.fromkeys(wanted) if v is not None]

    async def _follow(self) -> list[SwapEvent]:
        """Load what the shared state names (a replica started mid-canary gets both arms), and report."""
        events = []
        now = time.monotonic()
        for version in self._wanted():
            if self.slots.is_ready(version) or version not in self._manifests:
                continue
            failed = self._failed.get(version)
            if failed is not None and now - failed[1] < self.config.reconcile_interval_s:
                continue
            ok, detail = await self._bring_in(version)
            if ok:
                self._failed.pop(version, None)
                log.info("loaded %s, named by the routing state of %s", version, self.model)
            else:
                self._failed[version] = (detail, time.monotonic())
            events.append(SwapEvent("followed" if ok else "rejected", version, detail))
        self._report()
        return events

    def _report(self) -> None:
        state = self.canary.state()
        named = [v for v in (state.baseline_version, state.candidate_version) if v] if state else []
        m.REPLICA_READY.labels(self.model).set(1 if named and all(self.slots.is_ready(v) for v in named) else 0)
        wanted = set(self._wanted())
        failed = {v: why for v, (why, _) in self._failed.items() if v in wanted}
        self.canary.store.report_replica(
            self.model, ReplicaReport(self.replica, tuple(self.slots.ready()), failed), self.config.report_ttl_s
        )

    # -- the leader -------------------------------------------------------------------------
    async def _lead(self, now: datetime | None) -> list[SwapEvent]:
        events: list[SwapEvent] = []
        state = self.canary.state()
        retired = [v for v, mf in self._manifests.items() if mf.status != "published"]
        if state is not None and state.candidate_version in retired and state.status != "idle":
            self.canary.operator_action(
                "rollback", "hotswap", f"checkpoint {state.candidate_version} was withdrawn", now
            )
            state = self.canary.state()
        if (state is None or state.baseline_version is None) and self.base and self.slots.is_ready(self.base):
            self.canary.bootstrap(self.base, now, actor="flywheel serve")
            return [SwapEvent("bootstrapped", self.base)]
        preparing = self.canary.store.preparing(self.model)
        if preparing is not None:
            return await self._open_when_ready(preparing, now)
        newest = self._next_candidate()
        if newest is None:
            return events
        self._pending.remove(newest)
        self._done.add(newest)
        # Recorded before anything else: a later leader never tries it again (a rolled-back
        # candidate stays rolled back), whatever it read of models.checkpoints.
        self.canary.store.add_tried(self.model, newest, self.canary.fencing_token())
        ok, detail = await self._bring_in(newest)
        if not ok:
            self.canary.reject(newest, detail, now)
            return [SwapEvent("rejected", newest, detail)]
        if state is None or state.baseline_version is None:
            self.canary.bootstrap(newest, now)
            return [SwapEvent("bootstrapped", newest)]
        # Every replica loads it before it gets traffic anywhere.
        self.canary.store.set_preparing(self.model, newest, self.canary.fencing_token())
        self._report()
        return await self._open_when_ready(newest, now)

    async def _open_when_ready(self, version: str, now: datetime | None) -> list[SwapEvent]:
        """Open the canary of ``version`` once every live replica (this one included) has it
        ready; reject it if one could not load it; after ``prepare_timeout_s`` open it anyway
        if some replica has it (one still loading is not ready, and refuses candidate-bucket
        requests, until it has it), else reject it."""
        store, token = self.canary.store, self.canary.fencing_token()
        state = self.canary.state()
        if state is None or state.candidate_version is not None or state.status != "idle":
            store.set_preparing(self.model, None, token)  # opened (or superseded) before a leader change
            return []
        reports = store.replicas(self.model)  # this replica's among them (it reported this poll)
        failed = {r.replica: r.failed[version] for r in reports if version in r.failed}
        if failed:
            why = "; ".join(f"replica {name} could not load it: {reason}" for name, reason in sorted(failed.items()))
            self.canary.reject(version, why, now)
            store.set_preparing(self.model, None, token)
            self._preparing_since = None
            return [SwapEvent("rejected", version, why)]
        waiting = sorted(r.replica for r in reports if version not in r.ready)
        since = self._preparing_since
        if since is None or since[0] != version:
            since = self._preparing_since = (version, time.monotonic())
        if waiting and time.monotonic() - since[1] < self.config.prepare_timeout_s:
            return [SwapEvent("preparing", version, f"waiting for {', '.join(waiting)}")]
        if waiting and len(waiting) == len(reports):
            why = f"no replica loaded it within {self.config.prepare_timeout_s:.0f} s"
            self.canary.reject(version, why, now)
            store.set_preparing(self.model, None, token)
            self._preparing_since = None
            return [SwapEvent("rejected", version, why)]
        if waiting:
            log.warning(
                "opening the canary of %s while %s have not loaded it (after %.0f s): they refuse "
                "candidate-bucket requests until they have",
                version,
                ", ".join(waiting),
                self.config.prepare_timeout_s,
            )
        self.canary.start_canary(version, now)
        store.set_preparing(self.model, None, token)
        self._preparing_since = None
        return [SwapEvent("loaded", version)]

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
        tried = self.canary.store.tried(self.model)
        for version in [v for v in self._pending if v in tried]:
            self._pending.remove(version)
            self._done.add(version)
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
        routed = set(self._wanted())
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
