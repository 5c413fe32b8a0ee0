"""Batched reply generation from a chat model, shared by the gate, rejection sampling
and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingConfig:
    """How replies are sampled. Sampling (not greedy) so that rates such as
    "instruction-following" measure the policy's distribution, not its single mode."""

    max_new_tokens: int = 72
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 32
    seed: int = 0


def generate_replies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
    sampling: SamplingConfig = SamplingConfig(),
    num_return_sequences: int = 1,
) -> list[list[str]]:
    """For each conversation (chat messages, last one from the user) return
    ``num_return_sequences`` sampled replies, decoded without special tokens."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(sampling.seed)
    out: list[list[str]] = []
    try:
        for start in range(0, len(conversations), sampling.batch_size):
            chunk = conversations[start : start + sampling.batch_size]
            prompts = [
                tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False) for c in chunk
            ]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                gen = model.generate(  # type: ignore[operator]  # transformers 5: generate is on GenerationMixin, which causal LMs mix in and PreTrainedModel does not
                    **enc,
                    do_sample=True,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=0,
                    max_new_tokens=sampling.max_new_tokens,
                    num_return_sequences=num_return_sequences,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i in range(len(chunk)):
                out.append([t.strip() for t in texts[i * num_return_sequences : (i + 1) * num_return_sequences]])
    finally:
        tokenizer.padding_side = side
        torch.random.set_rng_state(generator_state)
        model.train(was_training)
    return out


def reply_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict[str, str]]],
    replies: Sequence[str],
    batch_size: int = 32,
) -> list[float]:
    """Sum of the policy's token log-probabilities of each reply (with its end-of-turn
    token) after its conversation: what DPO moves apart for chosen vs rejected."""
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(replies), batch_size):
        rows, masks = [], []
        for conv, reply in zip(
            conversations[start : start + batch_size], replies[start : start + batch_size], strict=True
        ):
            prompt = tokenizer.apply_chat_template(list(conv), add_generation_prompt=True, tokenize=False)
            full = tokenizer.apply_chat_template([*conv, {"role": "assistant", "content": reply}], tokenize=False)
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            ids = tokenizer(full, add_special_tokens=False)["input_ids"]
            rows.append(ids)
            masks.append([0] * len(p_ids) + [1] * (len(ids) - len(p_ids)))
        width = max(len(r) for r in rows)
        pad = int(tokenizer.pad_token_id)
        ids_t = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        attn = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        score_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids_t, attention_mask=attn).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids_t[:, 1:, None])[..., 0]
        out.extend((logp * score_mask[:, 1:]).sum(-1).tolist())
    return out
