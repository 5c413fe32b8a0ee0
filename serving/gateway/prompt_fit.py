"""Does a prompt fit the model's context? Decided before the request takes a queue slot
or reaches the engine, and cheaply:

1. By length in characters against ``ContextWindow.tokens × max_token_chars``: a prompt
   longer than that cannot fit whatever it says, so a 2 MB prompt is refused without
   being tokenised (microseconds).
2. Otherwise by the engine's own count of its tokens (chat template applied), when the
   engine can count here: on the event loop for short prompts, in a worker thread for
   longer ones (the tokenizer releases the GIL). A prompt that fills the context is
   refused; ``max_tokens`` is lowered to the room left, so the reply ends with
   ``finish_reason`` "length" where the context does.
"""

from __future__ import annotations

import asyncio
import dataclasses

from serving.engines.base import Engine, GenerationRequest, prompt_chars

# Counting ~2,000 characters costs the tiny test tokenizer ~1 ms (apply_chat_template
# ~30 µs, then ~0.45 µs per character); longer prompts are counted off the event loop.
INLINE_COUNT_CHARS = 2_000


async def fit_prompt(engine: Engine, version: str, request: GenerationRequest) -> GenerationRequest:
    """``request`` with ``max_tokens`` lowered to fit the context of ``version``, or
    ContextLengthExceededError. Unchanged when the engine does not know its context."""
    window = engine.context_window(version)
    if window is None:
        return request
    chars = prompt_chars(request.messages)
    window.check(chars)
    if chars <= INLINE_COUNT_CHARS:
        tokens = engine.count_prompt_tokens(version, request.messages)
    else:
        tokens = await asyncio.to_thread(engine.count_prompt_tokens, version, request.messages)
    if tokens is None:
        return request
    room = window.check(chars, tokens)
    if room is None or request.params.max_tokens <= room:
        return request
    return dataclasses.replace(request, params=dataclasses.replace(request.params, max_tokens=room))
