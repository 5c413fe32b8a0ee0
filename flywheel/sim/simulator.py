"""The simulation loop: users open sessions on simulated days and talk to a ChatClient.

On the virtual clock (``SimClock``) each step takes the actions due within ``step_s``
simulated seconds and runs them concurrently (so a batching engine sees real
concurrency); event times come from the simulated clock, so days pass in milliseconds
while every event stays ordered enough for event-time processing. On a real clock
(``WallClock``, when the gateway stamps events itself) every action starts when it is
due, with simulated durations compressed. Every random draw is seeded by
(seed, user, conversation, turn), so a run is reproducible whatever order replies come
back in.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flywheel.sim._catalogue import Character, Topic
from flywheel.sim._client import ChatClient, TurnReply, TurnRequest
from flywheel.sim._clock import Clock, SimClock
from flywheel.sim._judge import judge_reply, react
from flywheel.sim._population import Population, SimUser
from flywheel.sim._stats import SimStats, TurnRecord
from flywheel.sim.config import SimulatorConfig
from schemas import FeedbackKind, FlywheelError, SessionEndedEvent, UserFeedbackEvent
from streams import ChatEventProducer

log = logging.getLogger(__name__)

_NEUTRAL_SATISFACTION = 0.6
_FEEDBACK_DELAY_S = 3.0
_LEAVE_DELAY_S = 10.0


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class _Session:
    user: SimUser
    conversation_id: str
    character: Character
    topic: Topic
    day: int
    due: datetime
    turn: int = 1
    regenerate: bool = False
    user_text: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    satisfaction: list[float] = field(default_factory=list)
    model_version: str | None = None


class Simulator:
    """A population talking to ``client``; feedback and session ends go to ``events``.

    ``run()`` may be called repeatedly (e.g. once per demo phase): the simulation resumes
    where it stopped, with the same clock and the sessions still open.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        population: Population,
        client: ChatClient,
        events: ChatEventProducer | None = None,
        clock: Clock | None = None,
        on_turn: Callable[[TurnRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.population = population
        self.client = client
        self.events = events
        self.clock: Clock = clock or SimClock.days_ago(config.start_days_ago)
        self.stats = SimStats()
        self._on_turn = on_turn
        self._heap: list[tuple[datetime, str, _Session]] = []
        self._next_day = 0
        self._memory: dict[str, float] = {}

    # -- public ------------------------------------------------------------------------
    @property
    def day(self) -> int:
        return self._next_day - 1

    @property
    def open_sessions(self) -> int:
        return len(self._heap)

    async def run(self, days: int | None = None, stop: Callable[[], bool] | None = None) -> SimStats:
        """Simulate ``days`` more days (all their sessions finish), or until ``stop()``
        returns true (checked between actions; open sessions resume on the next call)."""
        if days is None and stop is None:
            raise ValueError("run() needs days or stop, or it would never return")
        last_day = self._next_day + days if days is not None else None
        semaphore = asyncio.Semaphore(self.config.concurrency)
        if self.clock.realtime:
            await self._run_realtime(semaphore, last_day, stop)
            return self.stats
        while not (stop is not None and stop()):
            if not self._heap:
                if last_day is not None and self._next_day >= last_day:
                    break
                self._open_day(self._next_day)
                self._next_day += 1
                continue
            await self._step(semaphore)
        return self.stats

    async def _run_realtime(
        self, semaphore: asyncio.Semaphore, last_day: int | None, stop: Callable[[], bool] | None
    ) -> None:
        """Each session's action starts when it is due, independently of the others (the
        engine batches whatever is in flight together)."""
        in_flight: set[asyncio.Task[_Session | None]] = set()

        async def advance(session: _Session) -> _Session | None:
            async with semaphore:
                return await self._advance(session)

        def collect(done: set[asyncio.Task[_Session | None]]) -> None:
            for task in done:
                in_flight.discard(task)
                session = task.result()
                if session is not None:
                    heapq.heappush(self._heap, (session.due, session.conversation_id, session))

        while not (stop is not None and stop()):
            if not self._heap and not in_flight:
                if last_day is not None and self._next_day >= last_day:
                    break
                self._open_day(self._next_day)
                self._next_day += 1
                continue
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                in_flight.add(asyncio.ensure_future(advance(heapq.heappop(self._heap)[2])))
            wait_s = (self._heap[0][0] - now).total_seconds() if self._heap else 0.5
            if in_flight:
                done, _ = await asyncio.wait(
                    in_flight, timeout=max(0.001, min(wait_s, 0.5)), return_when=asyncio.FIRST_COMPLETED
                )
                collect(done)
            else:
                await asyncio.sleep(max(0.0, min(wait_s, 0.5)))
        if in_flight:  # let started actions finish so their sessions resume next time
            done, _ = await asyncio.wait(in_flight)
            collect(done)

    def run_sync(self, days: int | None = None, stop: Callable[[], bool] | None = None) -> SimStats:
        return asyncio.run(self.run(days, stop))

    # -- scheduling ----------------------------------------------------------------------
    def _open_day(self, day: int) -> None:
        cfg = self.config
        day_start = self.clock.day_start(day)
        visits = 0
        for user in self.population.users:
            rng = random.Random(f"{cfg.seed}:visit:{user.id}:{day}")
            if day == 0 or user.id not in self._memory:
                p = cfg.visit_probability if day == 0 else cfg.return_base
            else:
                shift = user.prefs.loyalty + cfg.return_sensitivity * (self._memory[user.id] - _NEUTRAL_SATISFACTION)
                p = _sigmoid(_logit(cfg.return_base) + shift)
            if rng.random() >= p:
                continue
            visits += 1
            conversation = f"{user.id}-d{day}"
            character = self.population.character(user.pick_character(rng))
            topic = self.population.topic(user.pick_topic(rng))
            due = day_start + self.clock.duration(rng.uniform(0, cfg.active_window_s))
            session = _Session(user, conversation, character, topic, day, due)
            session.user_text = user.prefs.style.render(rng.choice(topic.openers), rng)
            heapq.heappush(self._heap, (due, conversation, session))
        self.stats.days_opened += 1
        self.stats.visits_by_day[day] = visits

    async def _step(self, semaphore: asyncio.Semaphore) -> None:
        first = self._heap[0][0]
        await self.clock.wait_until(first)
        horizon = first + self.clock.duration(self.config.step_s)
        due: list[_Session] = []
        while self._heap and self._heap[0][0] < horizon:
            due.append(heapq.heappop(self._heap)[2])

        async def advance(session: _Session) -> _Session | None:
            async with semaphore:
                return await self._advance(session)

        for session in await asyncio.gather(*(advance(s) for s in due)):
            if session is not None:
                heapq.heappush(self._heap, (session.due, session.conversation_id, session))
        await self.clock.wait_until(horizon)

    # -- one user action -------------------------------------------------------------------
    def _rng(self, session: _Session, what: str) -> random.Random:
        return random.Random(f"{self.config.seed}:{what}:{session.conversation_id}:{session.turn}:{session.regenerate}")

    def _messages(self, session: _Session) -> tuple[dict[str, str], ...]:
        """What the client app sends: the character's system prompt, the conversation so far, the new message."""
        history = session.history
        system = (
            ({"role": "system", "content": session.character.system_prompt},) if session.character.system_prompt else ()
        )
        return (*system, *history, {"role": "user", "content": session.user_text})

    async def _advance(self, session: _Session) -> _Session | None:
        """Send the session's due message; decide what the user does next."""
        cfg = self.config
        if session.turn == 1 and not session.regenerate:
            self.stats.sessions_started += 1
        request = TurnRequest(
            user_id=session.user.id,
            conversation_id=session.conversation_id,
            character_id=session.character.id,
            instructions=session.character.instructions,
            messages=self._messages(session),
            turn=session.turn,
            ts=self.clock.now() if self.clock.realtime else session.due,
            regenerate=session.regenerate,
        )
        self.stats.requests += 1
        try:
            reply: TurnReply = await self.client.complete(request)
        except Exception as exc:  # a failed request is a bad experience, not a crash of the run
            if getattr(exc, "code", None) == "context_length_exceeded":
                # The conversation no longer fits the model: the app starts afresh next time.
                self.stats.context_full += 1
                self._end(session, self._later(session.due, _LEAVE_DELAY_S), "context_full")
                return None
            self.stats.errors += 1
            log.warning("request failed for %s turn %d: %s", session.conversation_id, session.turn, exc)
            self._end(session, self._later(session.due, _LEAVE_DELAY_S), "error")
            return None
        session.model_version = reply.model_version or session.model_version or "unknown"
        earlier = tuple(m["content"] for m in session.history if m["role"] == "user")
        judgement = judge_reply(reply.text, session.character.instructions, session.topic.keywords, earlier=earlier)
        rng = self._rng(session, "react")
        reaction = react(judgement, session.user.prefs, rng, may_regenerate=not session.regenerate)
        session.satisfaction.append(reaction.p_continue)
        record = TurnRecord(
            day=session.day,
            user_id=session.user.id,
            conversation_id=session.conversation_id,
            character_id=session.character.id,
            turn=session.turn,
            model_version=session.model_version,
            arm=reply.arm,
            regenerated=session.regenerate,
            follows_instructions=judgement.follows_instructions,
            violation=judgement.violation,
            p_continue=reaction.p_continue,
            continued=reaction.continues and session.turn < cfg.max_turns,
            regenerate=reaction.regenerate,
            feedback=reaction.feedback,
            latency_ms=reply.latency_ms,
            reply_words=len(reply.text.split()),
        )
        self.stats.record(record)
        if self._on_turn is not None:
            self._on_turn(record)
        reply_ts = self.clock.now() if self.clock.realtime else session.due + timedelta(milliseconds=reply.latency_ms)
        for kind in reaction.feedback:
            self._emit_feedback(session, kind, self._later(reply_ts, _FEEDBACK_DELAY_S), rng)
        think = self.clock.duration(rng.uniform(*cfg.think_time_s))
        if reaction.regenerate:
            session.regenerate = True
            session.due = reply_ts + think
            return session
        if not record.continued:
            self._end(session, self._later(reply_ts, _LEAVE_DELAY_S), "user_left")
            return None
        session.history += [
            {"role": "user", "content": session.user_text},
            {"role": "assistant", "content": reply.text},
        ]
        session.turn += 1
        session.regenerate = False
        session.user_text = session.user.prefs.style.render(rng.choice(session.topic.follow_ups), rng)
        session.due = reply_ts + think
        return session

    def _later(self, t: datetime, simulated_s: float) -> datetime:
        """``t`` plus a short simulated delay; on a real clock never past now (events
        stamped in the future would be refused)."""
        later = t + self.clock.duration(simulated_s)
        return min(later, self.clock.now()) if self.clock.realtime else later

    def _end(self, session: _Session, ts: datetime, reason: str) -> None:
        satisfaction = sum(session.satisfaction) / len(session.satisfaction) if session.satisfaction else 0.0
        self._memory[session.user.id] = satisfaction
        self.stats.session_ended(session.model_version, session.turn if session.satisfaction else 0)
        if self.events is None:
            return
        rng = random.Random(f"{self.config.seed}:end:{session.conversation_id}")
        self._emit(
            SessionEndedEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                ts=ts,
                user_id=session.user.id,
                conversation_id=session.conversation_id,
                character_id=session.character.id,
                surface=self.config.surface,
                reason=reason,
            )
        )

    def _emit_feedback(self, session: _Session, kind: FeedbackKind, ts: datetime, rng: random.Random) -> None:
        if self.events is None:
            return
        self._emit(
            UserFeedbackEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                ts=ts,
                user_id=session.user.id,
                conversation_id=session.conversation_id,
                character_id=session.character.id,
                surface=self.config.surface,
                turn=session.turn,
                kind=kind,
            )
        )

    def _emit(self, event: UserFeedbackEvent | SessionEndedEvent) -> None:
        assert self.events is not None
        try:
            self.events.emit(event)
            self.stats.events_emitted += 1
        except FlywheelError as exc:  # the bus refusing one event must not stop the users
            log.warning("could not emit %s: %s", event.type, exc)
