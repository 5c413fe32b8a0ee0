"""What curation remembers across conversations of a partition: the SFT replies already
emitted (exact and near duplicates are not emitted twice) and, with ``pair_across_arms``,
the replies waiting for the other arm's reply to the same context. Both are bounded,
oldest first; both live in the partition's state (see ``_curation_state``) with
in-memory indexes rebuilt on restore."""

from __future__ import annotations

from collections import deque

from streams.processors._base import PartitionState, SourcePartition
from streams.processors._curation_state import CurationMeta, PairPool, PooledReply, SeenSignature, SeenText
from streams.processors._quality import LshIndex, exact_hash, minhash_signature

State = PartitionState[CurationMeta]


class SftMemory:
    """Exact (``d|`` entries, by normalised-text hash) and near (``n|`` entries, MinHash
    signatures behind an LSH index) duplicates of emitted SFT replies, at most
    ``capacity`` of each."""

    def __init__(self, capacity: int, minhash_perm: int, lsh_bands: int, near_dup_threshold: float) -> None:
        self._capacity = capacity
        self._perm, self._bands, self._threshold = minhash_perm, lsh_bands, near_dup_threshold
        self._lsh: dict[SourcePartition, LshIndex] = {}
        self._order: dict[SourcePartition, deque[str]] = {}

    def restore(self, source: SourcePartition, state: State) -> None:
        lsh = self._lsh[source] = LshIndex(self._bands, self._perm // self._bands)
        seen: list[tuple[int, str]] = []
        for key, value in state.entries.items():
            if key.startswith("n|"):
                lsh.add(key, value.signature)
                seen.append((value.seq, key))
            elif key.startswith("d|"):
                seen.append((value.seq, key))
        self._order[source] = deque(k for _, k in sorted(seen))

    def drop(self, source: SourcePartition) -> None:
        self._lsh.pop(source, None)
        self._order.pop(source, None)

    def novelty(self, source: SourcePartition, state: State, text: str) -> str | None:
        """None when ``text`` is new (and remembers it), else why not: ``exact_duplicate``
        or ``near_duplicate``."""
        h = "d|" + exact_hash(text)
        entries = state.entries
        if h in entries:
            return "exact_duplicate"
        sig = minhash_signature(text, self._perm)
        lsh = self._lsh[source]
        if lsh.query(sig, self._threshold, lambda sid: getattr(entries.get(sid), "signature", None)) is not None:
            return "near_duplicate"
        meta = state.meta
        meta.seq += 1
        n = f"n|{meta.seq}"
        state.put(h, SeenText(meta.seq))
        state.put(n, SeenSignature(meta.seq, sig))
        lsh.add(n, sig)
        order = self._order[source]
        order.extend((h, n))
        while len(order) > 2 * self._capacity:
            old = order.popleft()
            if old.startswith("n|") and old in entries:
                lsh.remove(old, entries[old].signature)
            state.delete(old)
        return None


class ArmPairPools:
    """Unpaired replies per context (``x|`` entries), at most ``capacity`` pools: a pool
    not changed since ``capacity`` newer changes is evicted."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._order: dict[SourcePartition, deque[tuple[int, str]]] = {}

    def restore(self, source: SourcePartition, state: State) -> None:
        pools = ((v.seq, k) for k, v in state.entries.items() if k.startswith("x|"))
        self._order[source] = deque(sorted(pools))

    def drop(self, source: SourcePartition) -> None:
        self._order.pop(source, None)

    def take(self, state: State, key: str, arm: str, continued: bool, conversation_id: str) -> PooledReply | None:
        """The waiting reply of ``arm`` with outcome ``continued`` from another conversation,
        removed from its pool; None when there is none."""
        pool: PairPool | None = state.entries.get(key)
        match = None if pool is None else pool.waiting.get((arm, continued))
        if pool is None or match is None or match.conversation_id == conversation_id:
            return None
        del pool.waiting[arm, continued]
        if pool.waiting:
            state.put(key, pool)
        else:
            state.delete(key)
        return match

    def keep(
        self, source: SourcePartition, state: State, key: str, arm: str, continued: bool, reply: PooledReply
    ) -> None:
        """Let ``reply`` wait (replacing an earlier one of the same arm and outcome)."""
        pool: PairPool = state.entries.get(key) or PairPool(0)
        meta = state.meta
        meta.seq += 1
        pool.seq = meta.seq
        pool.waiting[arm, continued] = reply
        state.put(key, pool)
        order = self._order[source]
        order.append((pool.seq, key))
        while len(order) > self._capacity:
            seq, old = order.popleft()
            evicted: PairPool | None = state.entries.get(old)
            if evicted is not None and evicted.seq == seq:  # not refreshed since: evict
                state.delete(old)
