"""Reading one streamed completion from vLLM: its SSE lines in, ``Delta``s out."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import aiohttp

from schemas import ServingError
from serving._errors import EngineUnavailableError, InvalidRequestError
from serving.engines.base import Delta


async def relay(resp: aiohttp.ClientResponse, url: str) -> AsyncGenerator[Delta, None]:
    """The deltas of vLLM's answer ``resp`` from replica ``url``; the last one carries the
    finish reason and the token counts.

    Raises InvalidRequestError for vLLM's 400 (a request it will never serve: not
    retried), EngineUnavailableError for its other refusals, and ServingError for an error
    vLLM reports inside a 200 stream.
    """
    if resp.status != 200:
        text = (await resp.read()).decode(errors="replace")
        if resp.status == 400:
            raise InvalidRequestError(f"vLLM refused the request: {_message(text)[:500]}")
        raise EngineUnavailableError(f"vLLM {url} answered {resp.status}: {text[:300]}", retry_after_s=1.0)
    finish: str | None = None
    usage: dict[str, int] = {}
    ended = False
    tail = b""
    # Whatever bytes arrived, split into lines here rather than with aiohttp's line
    # iterator, which does its buffer bookkeeping once per line (readline, readuntil,
    # resume_reading: about 33 calls per relayed 8-token stream in a profile of the gateway).
    async for piece in resp.content.iter_any():
        if ended:
            continue  # after [DONE], read on to the end: the connection then goes back to the pool
        *lines, tail = (tail + piece).split(b"\n")
        for raw in lines:
            if not raw.startswith(b"data:"):
                continue
            data = raw[5:].strip()
            if data == b"[DONE]":
                ended = True
                break
            chunk = json.loads(data)
            if "error" in chunk:  # vLLM reports late failures inside a 200 stream
                raise ServingError(f"vLLM error mid-stream: {chunk['error']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content") or ""
                if text:
                    yield Delta(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    yield Delta(
        "",
        "length" if finish == "length" else "stop",
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
    )


def _message(body: str) -> str:
    """The message of a vLLM error body (``{"message": …}`` or ``{"error": {"message": …}}``)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    inner = doc["error"] if isinstance(doc.get("error"), dict) else doc
    return str(inner.get("message") or body)
