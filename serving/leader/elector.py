"""Who leads: one replica per model takes the canary and hot-swap decisions.

``Leadership`` holds or seeks the lease. Every replica runs one; the leader renews every
``renew_interval_s`` and a follower tries to take a free lease as often. A leader counts
itself leader only until its last successful renewal (timed from before the call) plus
``lease_ttl_s − renew_interval_s``: it stops acting before Redis lets the lease go, and
the fencing token covers what a clock or a pause gets wrong.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from schemas import FlywheelError
from serving import _metrics as m
from serving.leader.leader_config import LeaderConfig
from serving.leader.lease import Lease, MemoryLease

log = logging.getLogger(__name__)


def default_replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    def __init__(
        self,
        config: LeaderConfig,
        lease: Lease,
        model: str,
        on_acquired: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_acquired(token)`` runs when this replica becomes leader, before it acts
        (the routing store raises its fence to the token there); if it raises, the lease
        is given up again."""
        self.config = config
        self.model = model
        self._lease = lease
        self._on_acquired = on_acquired
        self._clock = clock
        self._lock = threading.Lock()
        self._token: int | None = None
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        m.LEADER.labels(model).set(0)

    @classmethod
    def single_process(cls, model: str) -> Leadership:
        """The one process of an embedded setup: leader from the first step on."""
        leadership = cls(LeaderConfig(), MemoryLease(), model)
        leadership.step()
        return leadership

    @property
    def holder(self) -> str:
        return self._lease.holder

    def token(self) -> int | None:
        """The fencing token while this replica leads; None otherwise."""
        with self._lock:
            if self._token is not None and self._clock() < self._valid_until:
                return self._token
            return None

    def is_leader(self) -> bool:
        return self.token() is not None

    def leader(self) -> str | None:
        """Who holds the lease now (``<replica>:<token>``), as Redis says."""
        return self._lease.current_holder()

    def step(self) -> None:
        """One renewal (leader) or one attempt to take a free lease (follower)."""
        started = self._clock()
        with self._lock:
            held = self._token
        try:
            if held is not None:
                if self._lease.renew(held):
                    self._set(held, started)
                    return
                self._lose(f"lease taken over (token {held} no longer holds it)")
            token = self._lease.acquire()
        except FlywheelError as exc:
            # Redis away: keep acting only while the last renewal still covers us.
            log.warning("leader lease of %s: %s", self.model, exc)
            if held is not None and self._clock() >= self._valid_until:
                self._lose("could not renew the lease in time")
            return
        if token is None:
            return
        if self._on_acquired is not None:
            try:
                self._on_acquired(token)
            except Exception as exc:  # a newer leader fenced us out already: do not lead
                log.warning("took the lease of %s with token %d but may not lead: %s", self.model, token, exc)
                self._lease.release(token)
                return
        self._set(token, started)
        log.info("%s is now the leader of %s (fencing token %d)", self.holder, self.model, token)
        m.LEADER_CHANGES.labels(self.model, "acquired").inc()

    def _set(self, token: int, renewed_at: float) -> None:
        with self._lock:
            self._token = token
            self._valid_until = renewed_at + self.config.lease_ttl_s - self.config.renew_interval_s
        m.LEADER.labels(self.model).set(1)
        m.LEADER_TOKEN.labels(self.model).set(token)

    def _lose(self, why: str) -> None:
        with self._lock:
            token, self._token = self._token, None
        if token is not None:
            log.warning("%s is no longer the leader of %s: %s", self.holder, self.model, why)
            m.LEADER_CHANGES.labels(self.model, "lost").inc()
        m.LEADER.labels(self.model).set(0)

    # -- background loop (flywheel serve) -----------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self.step()
            self._thread = threading.Thread(target=self._run, name=f"leader-{self.model}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.renew_interval_s):
            try:
                self.step()
            except Exception:  # the loop must outlive one bad step
                log.exception("leader election step failed")

    def stop(self) -> None:
        """Stop seeking; a leader frees its lease so a successor need not wait for the TTL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            token, self._token = self._token, None
        if token is not None:
            try:
                self._lease.release(token)
            except FlywheelError as exc:
                log.warning("could not free the lease of %s: %s", self.model, exc)
        m.LEADER.labels(self.model).set(0)
        self._lease.close()
