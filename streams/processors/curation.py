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
"""

from __future__ import annotations

import hashlib
from collections import deque
from heapq import heappop
from typing import Any

from schemas import (
    CHAT_EVENTS,
    DEFAULT_LIMITS,
    DEFAULT_POLICY,
    EMOJI,
    SAMPLES_PREFERENCE,
    SAMPLES_REWARD,
    SAMPLES_SFT,
    SCHEMA_VERSION,
    ModelResponseEvent,
    PolicyRuleSet,
    SessionEndedEvent,
    UserFeedbackEvent,
    UserMessageEvent,
    ValidationLimits,
    check_policy,
    follows_instructions,
    parse_chat_event,
    words,
)
from streams.processors._base import META, EventTimeProcessor, Output, PartitionState, SourcePartition
from streams.processors._events import Timers, dumps, iso_ms, to_ms
from streams.processors._metrics import processor_metrics
from streams.processors._quality import LshIndex, exact_hash, minhash_signature, quality_problem, style_of
from streams.processors.curation_config import CurationConfig
from streams.processors.pii import redact


def _sample_id(kind: str, *parts: object) -> str:
    return hashlib.sha256("|".join([kind, *map(str, parts)]).encode()).hexdigest()[:24]


class CurationProcessor(EventTimeProcessor):
    """Turns ``chat.events`` into training samples. See the module docstring."""

    name = "curation"
    inputs: tuple[str, ...] = (CHAT_EVENTS,)

    def __init__(
        self,
        config: CurationConfig | None = None,
        policy: PolicyRuleSet = DEFAULT_POLICY,
        limits: ValidationLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self.config = c = config or CurationConfig()
        self._policy, self._limits = policy, limits
        self._cw, self._grace, self._idle = c.continue_window_s * 1000, c.grace_s * 1000, c.session_idle_s * 1000
        self._timers: dict[SourcePartition, Timers] = {}
        self._lsh: dict[SourcePartition, LshIndex] = {}
        self._order: dict[SourcePartition, deque[str]] = {}
        self._pool_order: dict[SourcePartition, deque[tuple[int, str]]] = {}
        self._metrics = processor_metrics()
        self._style: dict[str, dict[str, float]] = {}

    # -- restore -------------------------------------------------------------------------
    def _on_restore(self, source: SourcePartition, state: PartitionState) -> None:
        timers = self._timers[source] = Timers()
        lsh = self._lsh[source] = LshIndex(self.config.lsh_bands, self.config.minhash_perm // self.config.lsh_bands)
        state.meta.setdefault("seq", 0)
        dedup: list[tuple[int, str]] = []
        for key, value in state.entries.items():
            if key.startswith("c|"):
                if value["end"] is None:
                    timers.push(value["lt"] + self._idle + self._grace, "idle", key)
                    if value.get("pe") is not None:
                        timers.push(value["pe"] + self._grace, "end", key)
                    for turn in {r["t"] for r in value["r"].values()}:
                        due = max(r["ts"] for r in value["r"].values() if r["t"] == turn) + self._cw + self._grace
                        timers.push(due, "resp", key, str(turn))
                else:
                    timers.push(value["end"] + self._grace + self._cw, "gc", key)
            elif key.startswith("n|"):
                lsh.add(key, value["sig"])
                dedup.append((value["s"], key))
            elif key.startswith("d|"):
                dedup.append((value, key))
        self._order[source] = deque(k for _, k in sorted(dedup))
        self._pool_order[source] = deque(sorted((v["s"], k) for k, v in state.entries.items() if k.startswith("x|")))

    def _on_drop(self, source: SourcePartition) -> None:
        self._timers.pop(source, None)
        self._lsh.pop(source, None)
        self._order.pop(source, None)
        self._pool_order.pop(source, None)

    # -- records -------------------------------------------------------------------------
    def _apply(self, source: SourcePartition, state: PartitionState, key: str | None, value: bytes) -> list[Output]:
        event = parse_chat_event(value, self._limits)
        t = to_ms(event.ts)
        out: list[Output] = []
        ckey = "c|" + event.conversation_id
        conv = state.entries.get(ckey)
        if conv is None:
            conv = {
                "u": event.user_id,
                "cid": event.conversation_id,
                "ch": event.character_id,
                "m": {},
                "ut": {},
                "at": {},
                "r": {},
                "fb": {},
                "done": {},
                "end": None,
                "lt": t,
            }
            state.put(ckey, conv)
            self._timers[source].push(t + self._idle + self._grace, "idle", ckey)
        else:
            state.touch(ckey)
        if conv["end"] is None and t > conv["lt"]:
            conv["lt"] = t  # the conversation's idle timer re-arms itself from this
        if isinstance(event, UserMessageEvent):
            turn = str(event.turn)
            pending_end = conv.get("pe")
            if turn not in conv["m"] and conv["end"] is None and (pending_end is None or t <= pending_end):
                conv["m"][turn] = t
                conv["ut"][turn] = redact(event.text)[0]
                prev = str(event.turn - 1)
                if any(r["t"] == event.turn - 1 for r in conv["r"].values()):
                    self._finalise_turn(source, state, conv, prev, t, out)
        elif isinstance(event, ModelResponseEvent):
            self._on_response(source, state, ckey, conv, event, t, out)
        elif isinstance(event, UserFeedbackEvent):
            turn = str(event.turn)
            pending = [r for r in conv["r"].values() if r["t"] == event.turn]
            if pending:
                fb = max(pending, key=lambda r: r["ts"])["fb"]
            elif turn in conv["done"] or conv["end"] is not None:
                fb = []  # the outcome is already out; feedback after it is not retro-fitted
            else:
                fb = conv["fb"].setdefault(turn, [])
            if event.kind.value not in fb:
                fb.append(event.kind.value)
        elif isinstance(event, SessionEndedEvent) and conv["end"] is None and conv.get("pe") is None:
            if t + self._grace <= state.meta["wm"]:  # already past grace: end it now
                self._end(source, state, ckey, conv, t, out)
            else:
                conv["pe"] = t
                self._timers[source].push(t + self._grace, "end", ckey)
        meta = state.entries[META]
        if t > meta["wm"]:
            meta["wm"] = t
            self._fire(source, state, t, out)
        return out

    def _end(
        self, source: SourcePartition, state: PartitionState, ckey: str, conv: dict[str, Any], t: int, out: list[Output]
    ) -> None:
        for turn in sorted({str(r["t"]) for r in conv["r"].values()}, key=int):
            self._finalise_turn(source, state, conv, turn, None, out)
        conv.pop("pe", None)
        conv.update({"end": t, "m": {}, "ut": {}, "at": {}, "fb": {}})
        self._timers[source].push(t + self._grace + self._cw, "gc", ckey)

    def _on_response(
        self,
        source: SourcePartition,
        state: PartitionState,
        ckey: str,
        conv: dict[str, Any],
        event: ModelResponseEvent,
        t: int,
        out: list[Output],
    ) -> None:
        req, turn = event.request_id, str(event.turn)
        if req in conv["r"] or turn in conv["done"]:
            self._metrics.dropped.labels(self.name, "late_or_duplicate_response").inc()
            return
        conv["r"][req] = {
            "t": event.turn,
            "ts": t,
            "text": redact(event.text)[0],
            "mv": event.model_version,
            "arm": event.arm,
            "if": follows_instructions(event.text, event.instructions),
            "v": not check_policy(event.text, self._policy).passed,
            "regen": event.regenerated,
            "instr": [i.model_dump(mode="json") for i in event.instructions],
            "fb": conv["fb"].pop(turn, []),
        }
        nxt = conv["m"].get(str(event.turn + 1))
        if nxt is not None:
            self._finalise_turn(source, state, conv, turn, nxt, out)
        elif conv["end"] is not None:
            self._finalise_turn(source, state, conv, turn, None, out)
        else:
            self._timers[source].push(t + self._cw + self._grace, "resp", ckey, turn)

    def _fire(self, source: SourcePartition, state: PartitionState, wm: int, out: list[Output]) -> None:
        timers = self._timers[source]
        heap = timers.heap
        while heap and heap[0][0] <= wm:
            due, kind, ckey, turn = heappop(heap)
            conv = state.entries.get(ckey)
            if conv is None:
                continue
            if kind == "resp":
                group = [r["ts"] for r in conv["r"].values() if str(r["t"]) == turn]
                if group and max(group) + self._cw + self._grace == due:
                    state.touch(ckey)
                    self._finalise_turn(source, state, conv, turn, None, out)
            elif (
                kind == "end" and conv["end"] is None and conv.get("pe") is not None and conv["pe"] + self._grace == due
            ):
                state.touch(ckey)
                self._end(source, state, ckey, conv, conv["pe"], out)
            elif kind == "idle" and conv["end"] is None and conv.get("pe") is None:
                # One idle timer per open conversation, re-armed while it stays active.
                idle_due = conv["lt"] + self._idle + self._grace
                if idle_due > due:
                    timers.push(idle_due, "idle", ckey)
                    continue
                for t in sorted({str(r["t"]) for r in conv["r"].values()}, key=int):
                    self._finalise_turn(source, state, conv, t, None, out)
                state.delete(ckey)
            elif kind == "gc" and conv["end"] is not None and conv["end"] + self._grace + self._cw == due:
                state.delete(ckey)

    # -- samples ---------------------------------------------------------------------------
    def _finalise_turn(
        self,
        source: SourcePartition,
        state: PartitionState,
        conv: dict[str, Any],
        turn: str,
        next_ts: int | None,
        out: list[Output],
    ) -> None:
        group = sorted(((r["ts"], req) for req, r in conv["r"].items() if str(r["t"]) == turn))
        if not group:
            return
        resps = [(req, conv["r"].pop(req)) for _, req in group]
        conv["done"][turn] = 1
        latest = resps[-1][0]
        context = self._context(conv, int(turn))
        labelled = []
        for req, r in resps:
            continued = next_ts is not None and req == latest and next_ts - r["ts"] <= self._cw
            labels = {
                "continued": continued,
                "thumbs_up": "thumbs_up" in r["fb"],
                "thumbs_down": "thumbs_down" in r["fb"] or "report" in r["fb"],
                "regenerated": req != latest or "regenerate" in r["fb"],
                "instruction_following": r["if"],
                "violation": r["v"],
            }
            labelled.append((req, r, labels))
        conv["at"][turn] = resps[-1][1]["text"]
        for old in sorted(conv["at"], key=int)[: -self.config.context_turns]:
            conv["at"].pop(old, None)
            conv["ut"].pop(old, None)
        if not context:
            self._metrics.dropped.labels(self.name, "no_context").inc()
            return
        base = {
            "schema_version": SCHEMA_VERSION,
            "conversation_id": conv["cid"],
            "character_id": conv["ch"],
            "context": context,
        }
        for req, r, labels in labelled:
            out.append(
                self._sample(
                    SAMPLES_REWARD,
                    conv["cid"],
                    {
                        **base,
                        "kind": "reward",
                        "sample_id": _sample_id("reward", conv["cid"], req),
                        "instructions": r["instr"],
                        "ts": iso_ms(r["ts"]),
                        "response": r["text"],
                        "labels": labels,
                        "model_version": r["mv"],
                        "arm": r["arm"],
                    },
                    "reward",
                    r["text"],
                )
            )
            if (
                labels["continued"]
                and labels["instruction_following"]
                and not labels["violation"]
                and not labels["thumbs_down"]
                and self._clean(r["text"])
                and self._novel(source, state, r["text"])
            ):
                out.append(
                    self._sample(
                        SAMPLES_SFT,
                        conv["cid"],
                        {
                            **base,
                            "kind": "sft",
                            "sample_id": _sample_id("sft", conv["cid"], req),
                            "instructions": r["instr"],
                            "ts": iso_ms(r["ts"]),
                            "response": r["text"],
                            "model_version": r["mv"],
                        },
                        "sft",
                        r["text"],
                    )
                )
        self._pair(conv, base, labelled, out)
        if self.config.pair_across_arms:
            req, r, labels = labelled[-1]  # the reply the user saw last
            self._pair_across_arms(source, state, conv, base, req, r, labels, out)

    def _pair(self, conv: dict[str, Any], base: dict[str, Any], labelled: list[Any], out: list[Output]) -> None:
        if len(labelled) < 2:
            return
        good = [x for x in labelled if x[2]["continued"] and not x[2]["violation"] and not x[2]["thumbs_down"]]
        bad = [x for x in labelled if not x[2]["continued"]]
        if not good or not bad:
            return
        chosen, rejected = good[-1][1], bad[0][1]
        if self._pairable(chosen["text"], rejected["text"]):
            self._emit_pair(
                conv["cid"],
                base,
                chosen,
                rejected,
                "regenerate",
                _sample_id("preference", conv["cid"], good[-1][0], bad[0][0]),
                out,
            )

    def _pairable(self, chosen: str, rejected: str) -> bool:
        """The pair filters: a clean chosen reply, two different texts, similar length and emoji."""
        if not self._clean(chosen) or exact_hash(chosen) == exact_hash(rejected):
            self._metrics.dropped.labels(self.name, "pair_quality").inc()
            return False
        lc, lr = max(1, len(words(chosen))), max(1, len(words(rejected)))
        if max(lc, lr) / min(lc, lr) > self.config.max_length_ratio:
            self._metrics.dropped.labels(self.name, "pair_length_ratio").inc()
            return False
        if abs(len(EMOJI.findall(chosen)) - len(EMOJI.findall(rejected))) > self.config.max_emoji_difference:
            self._metrics.dropped.labels(self.name, "pair_emoji_difference").inc()
            return False
        return True

    def _emit_pair(
        self,
        key: str,
        base: dict[str, Any],
        chosen: dict[str, Any],
        rejected: dict[str, Any],
        source: str,
        sample_id: str,
        out: list[Output],
    ) -> None:
        sample = {
            **base,
            "kind": "preference",
            "instructions": chosen["instr"],
            "ts": iso_ms(chosen["ts"]),
            "sample_id": sample_id,
            "chosen": chosen["text"],
            "rejected": rejected["text"],
            "source": source,
        }
        out.append(self._sample(SAMPLES_PREFERENCE, key, sample, "preference.chosen", chosen["text"]))
        self._observe_style("preference.rejected", rejected["text"])

    def _pair_across_arms(
        self,
        source: SourcePartition,
        state: PartitionState,
        conv: dict[str, Any],
        base: dict[str, Any],
        req: str,
        reply: dict[str, Any],
        labels: dict[str, Any],
        out: list[Output],
    ) -> None:
        """Pair ``reply`` with an unpaired reply of the other arm to the same context and the
        opposite outcome, or keep it (``pair_across_arms``)."""
        if labels["violation"] or labels["thumbs_down"] or labels["regenerated"]:
            return  # neither side of a clean comparison
        good = labels["continued"]
        key = "x|" + exact_hash(conv["ch"] + "\n" + dumps(base["context"]).decode())
        pool = state.entries.get(key) or {"s": 0, "r": {}}
        other_arm = "candidate" if reply["arm"] == "baseline" else "baseline"
        match = pool["r"].get(f"{other_arm}|{not good}")
        if match is not None and match["cid"] != conv["cid"]:
            del pool["r"][f"{other_arm}|{not good}"]
            if pool["r"]:
                state.put(key, pool)
            else:
                state.delete(key)
            chosen, rejected = (reply, match) if good else (match, reply)
            chosen_req, rejected_req = (req, match["req"]) if good else (match["req"], req)
            if self._pairable(chosen["text"], rejected["text"]):
                self._emit_pair(
                    conv["cid"], base, chosen, rejected, "arms", _sample_id("preference", chosen_req, rejected_req), out
                )
            return
        meta = state.entries[META]
        meta["seq"] += 1
        pool["s"] = meta["seq"]
        pool["r"][f"{reply['arm']}|{good}"] = {
            "cid": conv["cid"],
            "req": req,
            "text": reply["text"],
            "ts": reply["ts"],
            "instr": reply["instr"],
        }
        state.put(key, pool)
        order = self._pool_order[source]
        order.append((pool["s"], key))
        while len(order) > self.config.pair_pool:
            seq, old = order.popleft()
            if state.entries.get(old, {}).get("s") == seq:  # not refreshed since: evict
                state.delete(old)

    def _context(self, conv: dict[str, Any], turn: int) -> list[dict[str, str]]:
        msgs: list[dict[str, str]] = []
        for t in sorted({int(k) for k in conv["ut"]} | {int(k) for k in conv["at"]}):
            if t > turn:
                break
            if str(t) in conv["ut"]:
                msgs.append({"role": "user", "content": conv["ut"][str(t)]})
            if t < turn and str(t) in conv["at"]:
                msgs.append({"role": "assistant", "content": conv["at"][str(t)]})
        return msgs

    def _clean(self, text: str) -> bool:
        c = self.config
        problem = quality_problem(text, c.min_words, c.max_words, c.min_ascii_letter_share, c.min_distinct_word_share)
        if problem is not None:
            self._metrics.dropped.labels(self.name, f"quality_{problem}").inc()
        return problem is None

    def _novel(self, source: SourcePartition, state: PartitionState, text: str) -> bool:
        """False for an exact or near duplicate of an earlier SFT reply; remembers ``text`` otherwise."""
        h = "d|" + exact_hash(text)
        if h in state.entries:
            self._metrics.dropped.labels(self.name, "exact_duplicate").inc()
            return False
        sig = minhash_signature(text, self.config.minhash_perm)
        lsh = self._lsh[source]
        signatures = state.entries
        if lsh.query(sig, self.config.near_dup_threshold, signatures) is not None:
            self._metrics.dropped.labels(self.name, "near_duplicate").inc()
            return False
        meta = state.entries[META]
        meta["seq"] += 1
        n = f"n|{meta['seq']}"
        state.put(h, meta["seq"])
        state.put(n, {"s": meta["seq"], "sig": sig})
        lsh.add(n, sig)
        order = self._order[source]
        order.extend((h, n))
        while len(order) > 2 * self.config.dedup_capacity:
            old = order.popleft()
            if old.startswith("n|") and old in state.entries:
                lsh.remove(old, state.entries[old]["sig"])
            state.delete(old)
        return True

    def _sample(self, topic: str, key: str, doc: dict[str, Any], stream: str, text: str) -> Output:
        self._metrics.samples.labels(doc["kind"]).inc()
        self._observe_style(stream, text)
        return Output(topic, key, dumps(doc))

    def _observe_style(self, stream: str, text: str) -> None:
        sums = self._style.setdefault(stream, {"n": 0.0})
        sums["n"] += 1
        for stat, v in style_of(text).items():
            sums[stat] = sums.get(stat, 0.0) + v
            self._metrics.style.labels(stream, stat).set(sums[stat] / sums["n"])

    def style_stats(self) -> dict[str, dict[str, float]]:
        """Mean words, emoji, question marks and stock phrases per emitted sample stream."""
        return {
            s: {k: v / sums["n"] for k, v in sums.items() if k != "n"} | {"samples": sums["n"]}
            for s, sums in self._style.items()
        }
