"""TEST STAND-IN for a vLLM OpenAI-compatible server — not vLLM, and not for production.

The vLLM engine is tested against a real vLLM server (tests/integration/vllm_server, started by
deploy/local/vllm.sh). This stand-in stays only for the unit tests that need a fault real
vLLM cannot be made to produce on demand: an error reported inside a 200 stream, a load
refused for a chosen name, an abort observed exactly when a client disconnects, a model
listing that fails a chosen number of times (a server too busy to answer a check). It
implements the vLLM endpoints the engine uses, with vLLM's request and response shapes
and status codes:

- ``GET /health`` — 200 while the server is up;
- ``GET /v1/models`` — the served model names (with ``max_model_len``) plus runtime-loaded
  LoRA adapters;
- ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` — 400 if the name exists or
  the path is missing (vLLM's behaviour with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``);
- ``POST /v1/unload_lora_adapter {"lora_name"}`` — 404 if unknown;
- ``POST /v1/chat/completions`` — streaming (SSE, ``data: [DONE]``, usage chunk with
  ``stream_options.include_usage``) and non-streaming; 404 for an unknown model; 400
  when prompt plus ``max_tokens`` exceed ``max_model_len`` (prompt tokens are words here).

Replies are deterministic: ``"<served name>:w0 <served name>:w1 …"`` with ``max_tokens``
words, so a test can tell which adapter answered and whether a reply is complete.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


class CompatState:
    """What the server serves. Tests may poke at it (e.g. restart = drop adapters)."""

    def __init__(self, served: tuple[str, ...], token_delay_s: float, max_model_len: int | None = None) -> None:
        self.served = set(served)
        self.max_model_len = max_model_len
        self.adapters: dict[str, str] = {}
        self.token_delay_s = token_delay_s
        self.requests: list[dict[str, Any]] = []
        self.aborted: list[str] = []
        self.fail_mid_stream = 0
        self.refuse_loads = False  # every load_lora_adapter answers 400
        self.fail_model_lists = 0  # the next this many GET /v1/models answer 503 (a busy server)

    def models(self) -> list[str]:
        return sorted(self.served) + sorted(self.adapters)


def _error(status: int, message: str, type_: str = "BadRequestError") -> JSONResponse:
    return JSONResponse(
        {"object": "error", "message": message, "type": type_, "param": None, "code": status}, status_code=status
    )


def create_vllm_compat_app(
    served: tuple[str, ...] = ("policy@base",), token_delay_s: float = 0.0, max_model_len: int | None = None
) -> FastAPI:
    app = FastAPI(title="vLLM-compatible test server (stand-in)")
    state = CompatState(served, token_delay_s, max_model_len)
    app.state.compat = state

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({}, status_code=200)

    @app.get("/v1/models")
    async def models() -> Any:
        if state.fail_model_lists:
            state.fail_model_lists -= 1
            return _error(503, "busy (refused by the test)", "ServiceUnavailableError")
        data: list[dict[str, Any]] = [
            {"id": m, "object": "model", "owned_by": "vllm", "created": 0} for m in state.models()
        ]
        for card in data:  # vLLM reports max_model_len on its base models, not on adapters
            if card["id"] in state.served and state.max_model_len:
                card["max_model_len"] = state.max_model_len
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter")
    async def load_lora(body: dict[str, Any]) -> Any:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name in state.adapters:
            return _error(400, f"The lora adapter '{name}' has already been loaded.")
        if state.refuse_loads:
            return _error(400, f"Loading lora {name} failed: refused by the test")
        if not Path(path).exists():
            return _error(400, f"Loading lora {name} failed: No adapter found for {path}")
        state.adapters[name] = path
        return f"Success: LoRA adapter '{name}' added successfully."

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(body: dict[str, Any]) -> Any:
        name = body.get("lora_name")
        if name not in state.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del state.adapters[name]
        return f"Success: LoRA adapter '{name}' removed successfully."

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        model = body.get("model")
        if model not in state.models():
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        state.requests.append(body)
        n = int(body.get("max_tokens") or 16)
        words = [f"{model}:w{i}" for i in range(n)]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        if state.max_model_len and prompt_tokens + n > state.max_model_len:
            return _error(
                400,
                f"This model's maximum context length is {state.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + n} tokens ({prompt_tokens} in the messages, {n} in the completion).",
            )
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.get("stream"):
            return {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
            }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        fail = state.fail_mid_stream > 0
        if fail:
            state.fail_mid_stream -= 1

        async def events() -> AsyncIterator[str]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
                doc = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(doc)}\n\n"

            done = False
            try:
                yield chunk({"role": "assistant", "content": ""})
                for i, word in enumerate(words):
                    if state.token_delay_s:
                        await asyncio.sleep(state.token_delay_s)  # simulated per-token generation time
                    if fail and i == len(words) // 2:
                        err = {
                            "error": {
                                "object": "error",
                                "message": "simulated engine failure",
                                "type": "InternalServerError",
                                "code": 500,
                            }
                        }
                        yield f"data: {json.dumps(err)}\n\n"
                        done = True
                        return
                    yield chunk({"content": ("" if i == 0 else " ") + word})
                yield chunk({}, "length")
                if include_usage:
                    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
                    yield f"data: {json.dumps({'id': rid, 'object': 'chat.completion.chunk', 'created': created, 'model': model, 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
                done = True
            finally:
                if not done:
                    state.aborted.append(rid)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class VllmCompatServer:
    """Runs ``create_vllm_compat_app`` on 127.0.0.1 in a background thread.

    The listening socket is bound to port 0 when the server is made (``port`` and ``url``
    are known from then on) and handed to uvicorn, so no other process can take the port
    between choosing and binding it.

    Usage::

        with VllmCompatServer(served=("policy@v0",)) as server:
            engine = VllmEngine(VllmEngineConfig(urls=(server.url,)))
    """

    def __init__(
        self, served: tuple[str, ...] = ("policy@base",), token_delay_s: float = 0.0, max_model_len: int | None = None
    ) -> None:
        self.app = create_vllm_compat_app(served, token_delay_s, max_model_len)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def state(self) -> CompatState:
        return self.app.state.compat

    def start(self) -> VllmCompatServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("vLLM compat server exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("vLLM compat server did not start within 30 s")
            time.sleep(0.02)  # poll interval of the start-up wait
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._socket.close()

    def __enter__(self) -> VllmCompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
