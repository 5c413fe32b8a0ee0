"""Sample curation: chat events in; ``samples.reward``, ``samples.sft`` and
``samples.preference`` out.

Every reply is joined with its outcome (the same event-time rule as the signals
processor: continued when the user's next message comes within the continue window;
finalised by that message, ``session_ended`` or a timer; like there, a session's end
takes effect when the watermark passes it + grace, so messages it overtook still
count). All replies of one turn are
finalised together, so regenerations can be paired. Text is PII-redacted as it enters
the state, so neither the changelog nor any sample ever holds raw personal data.

- reward: every labelled reply (continued, thumbs, regenerated, instruction following,
  violation);
- sft: continued, instruction-following, no violation, no thumbs-down/report, passes the
  quality filters, and neither an exact (normalised hash) nor a near (MinHash/LSH)
  duplicate of an earlier SFT reply of the partition;
- preference: two replies to the same context (a regeneration) with different outcomes;
  chosen is the continued, clean one; pairs that differ too much in length or emoji
  are dropped so the trainer does not learn length. With ``pair_across_arms``, also the
  two arms' replies to the same context in different conversations of the partition.

State types (``streams.processors._curation_state``): a ConversationState per
conversation, SeenText / SeenSignature per remembered SFT reply, a PairPool per context
with waiting replies, and CurationMeta; timers, pending ends and tombstones are the
shared ConversationLifecycle's, the bounded memories ``_curation_memory``'s.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic_core import to_json

from schemas import (
    CHAT_EVENTS,
    DEFAULT_LIMITS,
    DEFAULT_POLICY,
    SAMPLES_PREFERENCE,
    SAMPLES_REWARD,
    SAMPLES_SFT,
    ChatMessage,
    EngagementLabels,
    ModelResponseEvent,
    PolicyRuleSet,
    PreferenceSample,
    RewardSample,
    SessionEndedEvent,
    SftSample,
    UserFeedbackEvent,
    UserMessageEvent,
    ValidationLimits,
    check_policy,
    follows_instructions,
    parse_chat_event,
)
from streams.processors._base import EventTimeProcessor, Output, PartitionState, SourcePartition
from streams.processors._curation_memory import ArmPairPools, SftMemory
from streams.processors._curation_state import ConversationState, CuratedReply, CurationCodec, CurationMeta, PooledReply
from streams.processors._events import from_ms, to_ms
from streams.processors._lifecycle import ConversationLifecycle
from streams.processors._metrics import StyleStats, processor_metrics
from streams.processors._quality import exact_hash, pair_problem, quality_problem
from streams.processors.curation_config import CurationConfig
from streams.processors.pii import redact

State = PartitionState[CurationMeta]
Labelled = tuple[str, CuratedReply, EngagementLabels]
"""(request id, reply, labels) of a decided reply."""


def _sample_id(kind: str, *parts: object) -> str:
    return hashlib.sha256("|".join([kind, *map(str, parts)]).encode()).hexdigest()[:24]


class CurationProcessor(EventTimeProcessor[CurationMeta]):
    """Turns ``chat.events`` into training samples. See the module docstring."""

    name = "curation"
    inputs: tuple[str, ...] = (CHAT_EVENTS,)
    codec = CurationCodec()

    def __init__(
        self,
        config: CurationConfig | None = None,
        policy: PolicyRuleSet = DEFAULT_POLICY,
        limits: ValidationLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.config = c = config or CurationConfig()
        self._policy, self._limits = policy, limits
        self._cw = c.continue_window_s * 1000
        self._lifecycle = ConversationLifecycle[ConversationState](
            "c|",
            continue_window_ms=self._cw,
            grace_ms=c.grace_s * 1000,
            idle_ms=c.session_idle_s * 1000,
            on_reply_due=self._reply_due,
            on_end=self._conversation_ends,
            on_idle=self._conversation_idles,
        )
        self._sft = SftMemory(c.dedup_capacity, c.minhash_perm, c.lsh_bands, c.near_dup_threshold)
        self._pools = ArmPairPools(c.pair_pool)
        self._metrics = processor_metrics()
        self._style = StyleStats(self._metrics)

    # -- restore -------------------------------------------------------------------------
    def _on_restore(self, source: SourcePartition, state: State) -> None:
        self._lifecycle.restore(source, state)
        self._sft.restore(source, state)
        self._pools.restore(source, state)

    def _on_drop(self, source: SourcePartition) -> None:
        self._lifecycle.drop(source)
        self._sft.drop(source)
        self._pools.drop(source)

    # -- records -------------------------------------------------------------------------
    def _apply(self, source: SourcePartition, state: State, key: str | None, value: bytes) -> list[Output]:
        event = parse_chat_event(value, self._limits)
        t = to_ms(event.ts)
        out: list[Output] = []
        ckey = "c|" + event.conversation_id
        conv: ConversationState | None = state.entries.get(ckey)
        if conv is None:
            conv = ConversationState(event.user_id, event.conversation_id, event.character_id, last_ms=t)
            state.put(ckey, conv)
            self._lifecycle.opened(source, ckey, t)
        else:
            state.touch(ckey)
        if conv.ended_ms is None and t > conv.last_ms:
            conv.last_ms = t  # the conversation's idle timer re-arms itself from this
        if isinstance(event, UserMessageEvent):
            turn = event.turn
            if self._lifecycle.accepts_message(conv, turn, t):
                conv.messages[turn] = t
                conv.user_wrote(turn, redact(event.text)[0])
                if any(r.turn == turn - 1 for r in conv.replies.values()):
                    self._finalise_turn(source, state, conv, turn - 1, t, out)
        elif isinstance(event, ModelResponseEvent):
            self._on_response(source, state, ckey, conv, event, t, out)
        elif isinstance(event, UserFeedbackEvent):
            turn = event.turn
            pending = [r for r in conv.replies.values() if r.turn == turn]
            if pending:
                feedback = max(pending, key=lambda r: r.ts_ms).feedback
            elif turn in conv.decided_turns or conv.ended_ms is not None:
                feedback = []  # the outcome is already out; feedback after it is not retro-fitted
            else:
                feedback = conv.early_feedback.setdefault(turn, [])
            if event.kind.value not in feedback:
                feedback.append(event.kind.value)
        elif isinstance(event, SessionEndedEvent):
            self._lifecycle.end_event(source, state, ckey, conv, t, event.reason, out)
        meta = state.meta
        if t > meta.watermark_ms:
            meta.watermark_ms = t
            self._fire(source, state, t, out)
        return out

    def _fire(self, source: SourcePartition, state: State, wm: int, out: list[Output]) -> None:
        self._lifecycle.fire(source, state, wm, out)

    def _on_response(
        self,
        source: SourcePartition,
        state: State,
        ckey: str,
        conv: ConversationState,
        event: ModelResponseEvent,
        t: int,
        out: list[Output],
    ) -> None:
        req, turn = event.request_id, event.turn
        if req in conv.replies or turn in conv.decided_turns:
            self._metrics.dropped.labels(self.name, "late_or_duplicate_response").inc()
            return
        conv.replies[req] = CuratedReply(
            turn,
            t,
            redact(event.text)[0],
            event.model_version,
            event.arm,
            follows_instructions(event.text, event.instructions),
            not check_policy(event.text, self._policy).passed,
            event.regenerated,
            event.instructions,
            conv.early_feedback.pop(turn, []),
        )
        nxt = conv.messages.get(turn + 1)
        if nxt is not None:
            self._finalise_turn(source, state, conv, turn, nxt, out)
        elif conv.ended_ms is not None:
            self._finalise_turn(source, state, conv, turn, None, out)
        else:
            self._lifecycle.awaiting(source, ckey, req, t)

    # -- lifecycle hooks -----------------------------------------------------------------
    def _reply_due(
        self, source: SourcePartition, state: State, ckey: str, conv: ConversationState, req: str, out: list[Output]
    ) -> None:
        """All replies of a turn are decided together, once the latest one's timer is due."""
        reply = conv.replies[req]
        if reply.ts_ms == max(r.ts_ms for r in conv.replies.values() if r.turn == reply.turn):
            state.touch(ckey)
            self._finalise_turn(source, state, conv, reply.turn, None, out)

    def _conversation_ends(
        self,
        source: SourcePartition,
        state: State,
        ckey: str,
        conv: ConversationState,
        t: int,
        reason: str,
        out: list[Output],
    ) -> None:
        for turn in sorted({r.turn for r in conv.replies.values()}):
            self._finalise_turn(source, state, conv, turn, None, out)

    def _conversation_idles(
        self, source: SourcePartition, state: State, ckey: str, conv: ConversationState, out: list[Output]
    ) -> None:
        for turn in sorted({r.turn for r in conv.replies.values()}):
            self._finalise_turn(source, state, conv, turn, None, out)

    # -- samples ---------------------------------------------------------------------------
    def _finalise_turn(
        self,
        source: SourcePartition,
        state: State,
        conv: ConversationState,
        turn: int,
        next_ts: int | None,
        out: list[Output],
    ) -> None:
        group = sorted((r.ts_ms, req) for req, r in conv.replies.items() if r.turn == turn)
        if not group:
            return
        resps = [(req, conv.replies.pop(req)) for _, req in group]
        conv.decided_turns.add(turn)
        latest = resps[-1][0]
        context = conv.context(turn)
        labelled: list[Labelled] = []
        for req, r in resps:
            labels = EngagementLabels.trusted(
                continued=next_ts is not None and req == latest and next_ts - r.ts_ms <= self._cw,
                thumbs_up="thumbs_up" in r.feedback,
                thumbs_down="thumbs_down" in r.feedback or "report" in r.feedback,
                regenerated=req != latest or "regenerate" in r.feedback,
                instruction_following=r.instruction_following,
                violation=r.violation,
            )
            labelled.append((req, r, labels))
        conv.keep_context(turn, resps[-1][1].text, self.config.context_turns)
        if not context:
            self._metrics.dropped.labels(self.name, "no_context").inc()
            return
        cid, ch = conv.conversation_id, conv.character_id
        for req, r, labels in labelled:
            reward = RewardSample.trusted(
                sample_id=_sample_id("reward", cid, req),
                conversation_id=cid,
                character_id=ch,
                context=context,
                instructions=r.instructions,
                ts=from_ms(r.ts_ms),
                response=r.text,
                labels=labels,
                model_version=r.model_version,
                arm=r.arm,
            )
            out.append(self._sample(SAMPLES_REWARD, cid, reward, "reward", r.text))
            if (
                labels.continued
                and labels.instruction_following
                and not labels.violation
                and not labels.thumbs_down
                and self._clean(r.text)
                and self._novel(source, state, r.text)
            ):
                sft = SftSample.trusted(
                    sample_id=_sample_id("sft", cid, req),
                    conversation_id=cid,
                    character_id=ch,
                    context=context,
                    instructions=r.instructions,
                    ts=from_ms(r.ts_ms),
                    response=r.text,
                    model_version=r.model_version,
                )
                out.append(self._sample(SAMPLES_SFT, cid, sft, "sft", r.text))
        self._pair(conv, context, labelled, out)
        if self.config.pair_across_arms:
            self._pair_across_arms(source, state, conv, context, *labelled[-1], out)  # the reply the user saw last

    def _pair(
        self, conv: ConversationState, context: tuple[ChatMessage, ...], labelled: list[Labelled], out: list[Output]
    ) -> None:
        if len(labelled) < 2:
            return
        good = [x for x in labelled if x[2].continued and not x[2].violation and not x[2].thumbs_down]
        bad = [x for x in labelled if not x[2].continued]
        if not good or not bad:
            return
        (chosen_req, chosen, _), (rejected_req, rejected, _) = good[-1], bad[0]
        if self._pairable(chosen.text, rejected.text):
            sample_id = _sample_id("preference", conv.conversation_id, chosen_req, rejected_req)
            self._emit_pair(conv, context, chosen, rejected, "regenerate", sample_id, out)

    def _pairable(self, chosen: str, rejected: str) -> bool:
        """The pair filters: a clean chosen reply, two different texts, similar length and emoji."""
        c = self.config
        clean = self._clean(chosen)
        problem = (
            pair_problem(chosen, rejected, c.max_length_ratio, c.max_emoji_difference) if clean else "pair_quality"
        )
        if problem is not None:
            self._metrics.dropped.labels(self.name, problem).inc()
        return problem is None

    def _emit_pair(
        self,
        conv: ConversationState,
        context: tuple[ChatMessage, ...],
        chosen: CuratedReply | PooledReply,
        rejected: CuratedReply | PooledReply,
        source: Literal["regenerate", "arms"],
        sample_id: str,
        out: list[Output],
    ) -> None:
        sample = PreferenceSample.trusted(
            sample_id=sample_id,
            conversation_id=conv.conversation_id,
            character_id=conv.character_id,
            context=context,
            instructions=chosen.instructions,
            ts=from_ms(chosen.ts_ms),
            chosen=chosen.text,
            rejected=rejected.text,
            source=source,
        )
        out.append(self._sample(SAMPLES_PREFERENCE, conv.conversation_id, sample, "preference.chosen", chosen.text))
        self._style.observe("preference.rejected", rejected.text)

    def _pair_across_arms(
        self,
        source: SourcePartition,
        state: State,
        conv: ConversationState,
        context: tuple[ChatMessage, ...],
        req: str,
        reply: CuratedReply,
        labels: EngagementLabels,
        out: list[Output],
    ) -> None:
        """Pair ``reply`` with an unpaired reply of the other arm to the same context and the
        opposite outcome, or keep it (``pair_across_arms``)."""
        if labels.violation or labels.thumbs_down or labels.regenerated:
            return  # neither side of a clean comparison
        good = labels.continued
        key = "x|" + exact_hash(conv.character_id + "\n" + to_json(context).decode())
        other_arm = "candidate" if reply.arm == "baseline" else "baseline"
        match = self._pools.take(state, key, other_arm, not good, conv.conversation_id)
        if match is None:
            kept = PooledReply(conv.conversation_id, req, reply.text, reply.ts_ms, reply.instructions)
            self._pools.keep(source, state, key, reply.arm, good, kept)
            return
        chosen, rejected = (reply, match) if good else (match, reply)
        chosen_req, rejected_req = (req, match.request_id) if good else (match.request_id, req)
        if self._pairable(chosen.text, rejected.text):
            sample_id = _sample_id("preference", chosen_req, rejected_req)
            self._emit_pair(conv, context, chosen, rejected, "arms", sample_id, out)

    def _clean(self, text: str) -> bool:
        c = self.config
        problem = quality_problem(text, c.min_words, c.max_words, c.min_ascii_letter_share, c.min_distinct_word_share)
        if problem is not None:
            self._metrics.dropped.labels(self.name, f"quality_{problem}").inc()
        return problem is None

    def _novel(self, source: SourcePartition, state: State, text: str) -> bool:
        """False for an exact or near duplicate of an earlier SFT reply; remembers ``text`` otherwise."""
        duplicate = self._sft.novelty(source, state, text)
        if duplicate is not None:
            self._metrics.dropped.labels(self.name, duplicate).inc()
        return duplicate is None

    def _sample(
        self, topic: str, key: str, sample: RewardSample | SftSample | PreferenceSample, stream: str, text: str
    ) -> Output:
        self._metrics.samples.labels(sample.kind).inc()
        self._style.observe(stream, text)
        return Output(topic, key, sample.to_json_bytes())

    def style_stats(self) -> dict[str, dict[str, float]]:
        """Mean words, emoji, question marks and stock phrases per emitted sample stream."""
        return self._style.means()
