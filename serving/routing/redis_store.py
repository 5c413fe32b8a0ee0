"""The routing store in Redis, shared by every gateway replica (see ``serving.routing.store``).

Keys under ``<prefix>``: ``state:<model>`` (DeploymentState JSON), ``experiment:<model>``
(the canary's bookkeeping), ``preparing:<model>``, ``tried:<model>`` (JSON list), ``fence:<model>`` (highest fencing
token seen), ``requests:<model>`` (hash of request counts), ``replica:<model>:<id>``
(a replica's report, with a TTL), ``models`` (set of model names).

Fenced writes run as one Lua script: the token is compared with the fence and the keys
are written in the same atomic step, so no write of a stale leader lands after its
successor's claim.
"""

from __future__ import annotations

import json
import logging
import threading

import redis

from schemas import DeploymentState, ServingError
from serving.routing.store import ReplicaReport, RequestKey, refuse_stale

log = logging.getLogger(__name__)

# KEYS[1] = fence; ARGV[1] = token; then pairs (KEYS[i+1], ARGV[i+1]): a value to set, or
# the empty string to delete that key. Returns the fence in force (refused when > token).
_FENCED_WRITE = """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token < fence then return fence end
redis.call('SET', KEYS[1], token)
for i = 2, #KEYS do
  if ARGV[i] == '' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], ARGV[i]) end
end
return token
"""


class RedisRoutingStore:
    """Reads of the routing state are served from a local copy that a background thread
    refreshes every ``refresh_s`` seconds (one MGET for every model read so far), so the
    request path never waits on Redis: only a model's first read goes to Redis, and the
    gateway makes that read off the event loop at start-up (``Gateway.warm``). Writes go
    straight to Redis and update the local copy. A gateway therefore sees a change about
    ``refresh_s`` late, which is why the hot-swap controller keeps an old version loaded
    for a grace period longer than that before unloading it. While Redis is away the last
    known routing keeps being served. ``refresh_s=0`` reads Redis on every call (tools
    and tests). Everything else (bookkeeping, counts, reports) is read from Redis each
    time: only the controllers read it, once per poll.
    """

    def __init__(self, url: str, prefix: str = "flywheel:routing", refresh_s: float = 0.25) -> None:
        self._client_timeout_s = 2.0
        self._client = redis.Redis.from_url(url, socket_timeout=self._client_timeout_s)
        self._prefix = prefix
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cache: dict[str, DeploymentState | None] = {}
        self._write = self._client.register_script(_FENCED_WRITE)
        self._closed = threading.Event()
        self._refresher: threading.Thread | None = None
        self._refresh_failing = False

    def _key(self, kind: str, model: str) -> str:
        return f"{self._prefix}:{kind}:{model}"

    def _fenced(self, model: str, token: int, values: dict[str, str | None]) -> None:
        keys = [self._key("fence", model), *values]
        args = [str(token), *("" if v is None else v for v in values.values())]
        try:
            fence = int(self._write(keys=keys, args=args))
        except redis.RedisError as exc:
            raise ServingError(f"routing store write failed: {exc}", retry_after_s=1.0) from None
        refuse_stale(model, token, fence)

    # -- routing state ------------------------------------------------------------------
    def get(self, model: str) -> DeploymentState | None:
        with self._lock:
            if self._refresh_s > 0 and model in self._cache:
                return self._cache[model]
        try:
            raw = self._client.get(self._key("state", model))
        except redis.RedisError as exc:
            raise ServingError(f"routing store unavailable: {exc}", retry_after_s=1.0) from None
        state = DeploymentState.model_validate_json(raw) if raw else None
        if self._refresh_s > 0:
            with self._lock:
                self._cache.setdefault(model, state)  # a write or a refresh since the read is newer
            self._start_refresher()
        return state

    def _start_refresher(self) -> None:
        with self._lock:
            if self._refresher is not None or self._closed.is_set():
                return
            self._refresher = threading.Thread(target=self._refresh_loop, name="routing-refresh", daemon=True)
        self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            try:
                self._refresh_once()
            except Exception:  # a bad value in Redis must not end the refreshing for good
                log.exception("routing store refresh failed; serving the last known routing")

    def _refresh_once(self) -> None:
        with self._lock:
            models = list(self._cache)
        try:
            raws = self._client.mget([self._key("state", m) for m in models])
        except redis.RedisError as exc:
            if not self._refresh_failing:  # once per outage, not once per refresh
                log.warning("routing store refresh failed; serving the last known routing: %s", exc)
            self._refresh_failing = True
            return
        if self._refresh_failing:
            log.info("routing store refresh recovered")
        self._refresh_failing = False
        states = {
            m: DeploymentState.model_validate_json(raw) if raw else None for m, raw in zip(models, raws, strict=True)
        }
        with self._lock:
            self._cache.update(states)

    def put(self, state: DeploymentState, token: int = 0, experiment: str | None = None) -> None:
        self._fenced(
            state.model,
            token,
            {
                self._key("state", state.model): state.model_dump_json(),
                self._key("experiment", state.model): experiment,
            },
        )
        try:
            self._client.sadd(f"{self._prefix}:models", state.model)
        except redis.RedisError as exc:
            raise ServingError(f"routing store write failed: {exc}", retry_after_s=1.0) from None
        if self._refresh_s > 0:
            with self._lock:
                self._cache[state.model] = state
            self._start_refresher()

    # -- the leader's bookkeeping -----------------------------------------------------------
    def _read(self, key: str) -> str | None:
        try:
            raw = self._client.get(key)
        except redis.RedisError as exc:
            raise ServingError(f"routing store unavailable: {exc}", retry_after_s=1.0) from None
        return raw.decode() if isinstance(raw, bytes) else raw

    def experiment(self, model: str) -> str | None:
        return self._read(self._key("experiment", model))

    def put_experiment(self, model: str, experiment: str, token: int) -> None:
        self._fenced(model, token, {self._key("experiment", model): experiment})

    def claim(self, model: str, token: int) -> None:
        self._fenced(model, token, {})

    def preparing(self, model: str) -> str | None:
        return self._read(self._key("preparing", model))

    def set_preparing(self, model: str, version: str | None, token: int) -> None:
        self._fenced(model, token, {self._key("preparing", model): version})

    def tried(self, model: str) -> set[str]:
        raw = self._read(self._key("tried", model))
        return set(json.loads(raw)) if raw else set()

    def add_tried(self, model: str, version: str, token: int) -> None:
        # Only the leader writes it, and the write is fenced: read-modify-write is safe here.
        tried = sorted(self.tried(model) | {version})
        self._fenced(model, token, {self._key("tried", model): json.dumps(tried)})

    # -- the fleet ------------------------------------------------------------------------
    def add_request_counts(self, model: str, deltas: dict[RequestKey, int]) -> None:
        if not deltas:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, n in deltas.items():
                pipe.hincrby(self._key("requests", model), json.dumps(list(key)), n)
            pipe.execute()
        except redis.RedisError as exc:
            raise ServingError(f"routing store write failed: {exc}", retry_after_s=1.0) from None

    def request_counts(self, model: str) -> dict[RequestKey, int]:
        try:
            raw = self._client.hgetall(self._key("requests", model))
        except redis.RedisError as exc:
            raise ServingError(f"routing store unavailable: {exc}", retry_after_s=1.0) from None
        out: dict[RequestKey, int] = {}
        for field, value in raw.items():
            arm, version, outcome = json.loads(field)
            out[(arm, version, outcome)] = int(value)
        return out

    def report_replica(self, model: str, report: ReplicaReport, ttl_s: float) -> None:
        body = json.dumps({"replica": report.replica, "ready": list(report.ready), "failed": report.failed})
        try:
            self._client.set(f"{self._key('replica', model)}:{report.replica}", body, px=max(1, int(ttl_s * 1000)))
        except redis.RedisError as exc:
            raise ServingError(f"routing store write failed: {exc}", retry_after_s=1.0) from None

    def replicas(self, model: str) -> list[ReplicaReport]:
        try:
            keys = sorted(self._client.scan_iter(f"{self._key('replica', model)}:*"))
            bodies = self._client.mget(keys) if keys else []
        except redis.RedisError as exc:
            raise ServingError(f"routing store unavailable: {exc}", retry_after_s=1.0) from None
        reports = []
        for body in bodies:
            if body is None:  # lapsed between the scan and the read
                continue
            doc = json.loads(body)
            reports.append(ReplicaReport(doc["replica"], tuple(doc["ready"]), dict(doc["failed"])))
        return reports

    def models(self) -> list[str]:
        members = self._client.smembers(f"{self._prefix}:models")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def delete_all(self) -> None:
        """Remove every key under the prefix (tests)."""
        for key in self._client.scan_iter(f"{self._prefix}:*"):
            self._client.delete(key)

    def close(self) -> None:
        self._closed.set()
        if self._refresher is not None:
            self._refresher.join(timeout=self._client_timeout_s + 1)  # at most one MGET in flight
        self._client.close()
