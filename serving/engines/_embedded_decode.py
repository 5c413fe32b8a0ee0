"""The embedded engine's decoding loop: one batch, rows of several versions, one step clock.

A batch may hold rows of several versions (a canary's two arms). Each version's rows form
a group, a left-padded batch of its own run by its own model, and every step advances
every live group by one token before the next step begins. A row therefore waits for the
same batches and generates at the same pace whatever its version's share of traffic. A
batch of one version per ``model.generate`` call could not give that: in bursts of
traffic the majority arm's request was usually first in line, so the other arm waited out
a whole batch four times in five and the canary's latency guardrail rolled back candidates
for the engine's scheduling (bench/arm_latency.py --wave).

Sampling follows ``generate``'s defaults for these settings: temperature, then the model's
``generation_config.top_k`` (50 when it sets none), then nucleus ``top_p``; temperature 0
is greedy. A row ends at the tokenizer's end-of-sequence or any the generation config
names (Llama 3 chat models end a turn with one the tokenizer does not call its own). The
generation config's other settings (repetition penalty and the like) are not applied.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from serving.engines._embedded_batch import BatchStreamer, Job, left_padded
from serving.engines.base import SamplingParams

_GENERATE_TOP_K = 50
"""The top_k that ``generate`` samples with when a checkpoint's generation config sets none."""


@dataclass
class Group:
    """One version's rows of a batch: its model, its rows' jobs and their prompt ids."""

    model: Any
    tokenizer: Any
    jobs: list[Job]
    rows: list[list[int]]


class _Running:
    """A group being decoded: its attention mask, positions and KV cache so far."""

    def __init__(self, group: Group) -> None:
        self.model = group.model
        self.jobs = group.jobs
        config = group.model.generation_config
        self.streamer = BatchStreamer(group.jobs, group.tokenizer, getattr(config, "eos_token_id", None))
        enc = left_padded(group.rows, group.tokenizer.pad_token_id, group.model.device)
        self.mask = enc["attention_mask"]
        self.next_input = enc["input_ids"]
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.past: Any = None
        top_k = getattr(config, "top_k", None)
        self.top_k = _GENERATE_TOP_K if top_k is None else int(top_k)
        # Only the last position's logits are sampled from. Without this the prompt's step
        # computes the whole vocabulary at every prompt position (for a Llama 3 vocabulary,
        # about 150 MB per row of a 300-token prompt), as generate() avoids too.
        keeps = "logits_to_keep" in inspect.signature(group.model.forward).parameters
        self.last_logits_only: dict[str, Any] = {"logits_to_keep": 1} if keeps else {}

    def live(self) -> bool:
        return any(not (j.finished or j.cancelled.is_set()) for j in self.jobs)

    def step(self, params: SamplingParams) -> None:
        import torch

        out = self.model(
            input_ids=self.next_input,
            attention_mask=self.mask,
            position_ids=self.positions,
            past_key_values=self.past,
            use_cache=True,
            **self.last_logits_only,
        )
        self.past = out.past_key_values
        tokens = _pick(out.logits[:, -1, :].float(), params, self.top_k)
        self.streamer.put(tokens)
        self.next_input = tokens[:, None]
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=-1)
        self.positions = self.positions[:, -1:] + 1


def decode(groups: list[Group], params: SamplingParams, max_new_tokens: int) -> None:
    """Generate up to ``max_new_tokens`` for every row of ``groups``, one step of every
    live group at a time, streaming through each job; stops early once no row is live."""
    import torch

    if params.temperature > 0 and params.seed is not None:
        torch.manual_seed(params.seed)
    every = [_Running(g) for g in groups if g.jobs]
    running = every
    with torch.inference_mode():
        for step in range(max_new_tokens):
            running = [r for r in running if r.live()]
            if not running:
                break
            turn = step % len(running)  # each group's tokens go out first as often as the others'
            for r in running[turn:] + running[:turn]:
                r.step(params)
    for r in every:  # rows still open ran out of steps
        r.streamer.end()


def _pick(logits: Any, params: SamplingParams, top_k: int) -> Any:
    """The next token of each row: greedy at temperature 0, else sampled."""
    import torch

    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        probs = ordered.softmax(dim=-1)
        # drop a token once the more likely ones already cover top_p (always keep the first)
        drop = probs.cumsum(dim=-1) - probs > params.top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(dim=-1), 1).squeeze(-1)
