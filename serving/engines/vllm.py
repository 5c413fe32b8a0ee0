"""The vLLM engine: a thin client of vLLM's OpenAI-compatible HTTP servers.

- LoRA checkpoints are loaded at runtime into every replica with
  ``POST /v1/load_lora_adapter`` under an immutable name ``<model>@<version>`` (a name is
  never reloaded in place: vLLM keeps stale prefix-cache entries for a reused name), and
  removed with ``POST /v1/unload_lora_adapter``. The files are checked against the
  manifest's sha256 before vLLM is asked to read them. Runtime loads are not persisted by
  vLLM, so ``reconcile()`` (run periodically by the hot-swap controller) re-applies them to
  a replica that restarted or came up late.
- Full checkpoints go blue/green. With ``launcher.enabled``, a full checkpoint that no
  configured replica serves gets a vLLM process of its own (``vllm_launcher``), started,
  checked ready and warmed up before it is routed to; ``unload`` stops routing to it,
  drains its in-flight requests and stops the process. Without the launcher, the
  deployment starts a replica with ``--served-model-name <model>@<version>``; ``load``
  waits until a replica lists that name and answers ``/health``, and the deployment stops
  the replica once it is unloaded.

Requests select a version with ``"model": "<model>@<version>"``. A real completion is the
health probe: ``/health`` can stay 200 after a GPU fault. vLLM may report an error as the
last chunk of a 200 stream; that is raised, not relayed as text. vLLM's 400 (a request it
will never serve, e.g. prompt plus max_tokens over its context) is the client's error and
is not retried.

The context of a version is ``max_model_len`` from the settings, else the smallest one the
replicas report in ``/v1/models`` when it is loaded. The tokenizer of a version (its
checkpoint folder, or ``tokenizer_dir`` for the base the replicas were started with) is
loaded here too, so the gateway counts prompt tokens exactly and refuses a prompt that
cannot fit before it reaches a replica; without one it pre-checks length in characters.

The tests run this client against a real vLLM server (``deploy/local/vllm.sh``; the
``vllm`` marker). ``tests.kits.vllm_compat_server`` stays for the faults real vLLM
cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx

from schemas import ServingError
from serving._errors import EngineUnavailableError, ModelLoadError
from serving.engines._checkpoint import verify_checkpoint_dir
from serving.engines._tokens import encode, longest_token_chars
from serving.engines._vllm_stream import relay
from serving.engines.base import ContextWindow, Delta, GenerationRequest, Messages, ModelSource
from serving.engines.vllm_config import VllmEngineConfig
from serving.engines.vllm_launcher import LaunchedReplica, VllmLauncher

log = logging.getLogger(__name__)


class VllmEngine:
    def __init__(self, config: VllmEngineConfig | None = None, client: httpx.AsyncClient | None = None) -> None:
        self.config = config or VllmEngineConfig()
        timeout = httpx.Timeout(self.config.request_timeout_s, connect=self.config.connect_timeout_s)
        self._client = client or httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        )
        self._replicas: dict[str, list[str]] = {}  # version -> replica URLs serving it
        self._kinds: dict[str, ModelSource] = {}
        self._unanswered_checks: dict[str, int] = {}  # replica URL -> reconcile checks failed in a row
        self._windows: dict[str, ContextWindow] = {}
        self._tokenizers: dict[str, Any] = {}
        self._streams: aiohttp.ClientSession | None = None
        self._rr = itertools.count()
        self._in_flight: Counter[str] = Counter()  # per version: what unload drains before stopping a process
        self._launched: dict[str, LaunchedReplica] = {}
        ports = {urlsplit(url).port for url in self.config.urls}
        self._launcher = (
            VllmLauncher(self.config.launcher, {p for p in ports if p}) if self.config.launcher.enabled else None
        )

    def served_name(self, version: str) -> str:
        return f"{self.config.model}@{version}"

    def versions(self) -> list[str]:
        return sorted(self._replicas)

    def context_window(self, version: str) -> ContextWindow | None:
        return self._windows.get(version)

    def count_prompt_tokens(self, version: str, messages: Messages) -> int | None:
        tokenizer = self._tokenizers.get(version)
        return len(encode(tokenizer, messages)) if tokenizer is not None else None

    async def close(self) -> None:
        for replica in list(self._launched.values()):  # the processes this gateway started end with it
            await self._stop_launched(replica)
        await self._client.aclose()
        if self._streams is not None:
            await self._streams.close()

    # -- loading --------------------------------------------------------------------
    async def _models(self, url: str) -> list[dict[str, Any]]:
        resp = await self._client.get(f"{url}/v1/models")
        resp.raise_for_status()
        return list(resp.json().get("data", []))

    async def _listed(self, url: str) -> set[str]:
        return {m["id"] for m in await self._models(url)}

    async def _window(self, urls: list[str], tokenizer: Any) -> ContextWindow | None:
        """The configured context, else the smallest ``max_model_len`` the replicas report
        (vLLM reports it on its base model; an adapter shares its base's)."""
        tokens = self.config.max_model_len
        if not tokens:
            reported = [
                int(m["max_model_len"]) for url in urls for m in await self._models(url) if m.get("max_model_len")
            ]
            tokens = min(reported, default=0)
        chars = longest_token_chars(tokenizer) if tokenizer is not None else self.config.max_token_chars
        return ContextWindow(tokens, chars) if tokens else None

    def _load_tokenizer(self, source: ModelSource) -> Any:
        """The version's tokenizer (its folder, else ``tokenizer_dir``), or None: then the
        gateway pre-checks prompts by length only."""
        folder = source.path or self.config.tokenizer_dir
        if folder is None:
            return None
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            # One call settles the tokenizer's truncation/padding state; later calls (from
            # the gateway's threads) only read it.
            encode(tokenizer, ({"role": "user", "content": "hello"},))
        except Exception as exc:  # a missing or odd tokenizer costs exact counting, not the load
            log.warning(
                "checkpoint %s: no usable tokenizer in %s (%s); prompts are checked by length",
                source.version,
                folder,
                exc,
            )
            return None
        return tokenizer

    async def _healthy(self, url: str) -> bool:
        try:
            return (await self._client.get(f"{url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    def _remote_path(self, source: ModelSource) -> str:
        path = str(source.path)
        if self.config.local_path_prefix and path.startswith(self.config.local_path_prefix):
            path = self.config.lora_path_prefix + path[len(self.config.local_path_prefix) :]
        return path

    async def load(self, source: ModelSource) -> None:
        if source.version in self._replicas:
            return
        name = self.served_name(source.version)
        if source.kind == "lora" and source.path is None:
            raise ModelLoadError(f"checkpoint {source.version}: LoRA without a path", version=source.version)
        if source.path is not None:  # before any replica reads the files
            await asyncio.to_thread(verify_checkpoint_dir, source.path, source.version, source.manifest)
        tokenizer = await asyncio.to_thread(self._load_tokenizer, source)
        try:
            if source.kind == "lora":
                urls = await self._load_lora_everywhere(name, source)
            else:
                urls = await self._full_replicas(name, source)
                for url in urls:
                    await self._warm_up(url, name, source.version)
            window = await self._window(urls, tokenizer)
        except (httpx.HTTPError, ServingError) as exc:
            launched = self._launched.pop(source.version, None)
            if launched is not None:  # a green process that failed its warm-up is not kept
                await self._stop_launched(launched)
            if isinstance(exc, ServingError):
                raise
            raise ModelLoadError(
                f"checkpoint {source.version}: vLLM unreachable: {exc}", version=source.version
            ) from exc
        self._replicas[source.version] = urls
        self._kinds[source.version] = source
        if tokenizer is not None:
            self._tokenizers[source.version] = tokenizer
        if window is not None:
            self._windows[source.version] = window

    async def _full_replicas(self, name: str, source: ModelSource) -> list[str]:
        """The replicas of a full version: those already serving it; else, with the launcher
        and the checkpoint's files, a process started for it once a configured replica has
        answered without listing it (while none answers, e.g. the deployment is still
        starting its base, this waits for the deployment as without the launcher)."""
        if self._launcher is None or source.path is None:
            return await self._wait_for_replicas(name, source.version)
        urls, answered = [], False
        for url in self.config.urls:
            with contextlib.suppress(httpx.HTTPError):
                listed = await self._listed(url)
                answered = True
                if name in listed:
                    urls.append(url)
        if urls or not answered:
            return urls or await self._wait_for_replicas(name, source.version)
        replica = await self._launcher.launch(source.version, name, source.path)
        self._launched[source.version] = replica
        return [replica.url]

    async def _stop_launched(self, replica: LaunchedReplica) -> None:
        assert self._launcher is not None
        self._launched.pop(replica.version, None)
        await self._launcher.drain_and_stop(replica, lambda: self._in_flight[replica.version])

    async def _load_lora_everywhere(self, name: str, source: ModelSource) -> list[str]:
        """Load and warm up the adapter on every replica that answers; a replica that is
        down now gets it from ``reconcile()`` when it is back. Fails only if none took it."""
        urls = []
        for url in self.config.urls:
            try:
                await self._load_lora(url, name, self._remote_path(source), source.version)
                await self._warm_up(url, name, source.version)
            except httpx.HTTPError as exc:
                log.warning(
                    "checkpoint %s: replica %s unreachable (%s); reconcile will load it later", source.version, url, exc
                )
                continue
            urls.append(url)
        if not urls:
            raise ModelLoadError(
                f"checkpoint {source.version}: no vLLM replica answered ({', '.join(self.config.urls)})",
                version=source.version,
            )
        return urls

    async def _load_lora(self, url: str, name: str, path: str, version: str) -> None:
        resp = await self._client.post(f"{url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path})
        if resp.status_code == 200:
            return
        if resp.status_code == 400 and name in await self._listed(url):
            return  # already loaded under this immutable name (e.g. a controller restart)
        raise ModelLoadError(
            f"checkpoint {version}: {url} refused the adapter: {resp.status_code} {resp.text[:200]}", version=version
        )

    async def _wait_for_replicas(self, name: str, version: str) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.load_timeout_s
        while True:
            urls = []
            for url in self.config.urls:
                try:
                    if name in await self._listed(url) and await self._healthy(url):
                        urls.append(url)
                except httpx.HTTPError:
                    continue
            if urls:
                return urls
            if loop.time() >= deadline:
                raise ModelLoadError(
                    f"checkpoint {version}: no replica serves {name!r} after {self.config.load_timeout_s:.0f}s "
                    f"(start one with --served-model-name {name})",
                    version=version,
                )
            await asyncio.sleep(self.config.poll_interval_s)

    async def _warm_up(self, url: str, name: str, version: str) -> None:
        body = {
            "model": name,
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": self.config.warmup_max_tokens,
            "temperature": 0.0,
        }
        resp = await self._client.post(f"{url}/v1/chat/completions", json=body)
        if resp.status_code != 200:
            raise ModelLoadError(
                f"checkpoint {version}: warm-up on {url} failed: {resp.status_code} {resp.text[:200]}", version=version
            )

    async def unload(self, version: str) -> None:
        urls = self._replicas.pop(version, [])
        source = self._kinds.pop(version, None)
        self._windows.pop(version, None)
        self._tokenizers.pop(version, None)
        if version in self._launched:  # routed nowhere now: drain, then stop its process
            await self._stop_launched(self._launched[version])
        if source is None or source.kind != "lora":
            return  # blue/green without the launcher: the deployment stops the drained replica
        for url in urls:
            try:
                await self._client.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": self.served_name(version)})
            except httpx.HTTPError as exc:
                log.warning("unload of %s on %s failed: %s", version, url, exc)

    async def reconcile(self) -> list[tuple[str, str]]:
        """Bring every replica to what is loaded here; returns the (url, version) pairs it
        (re)loaded.

        A replica that restarted (runtime adapters are not persisted) or came up after a
        version was loaded gets the adapter and a warm-up; only then is it routed to for
        that version. A replica that does not answer is taken out of routing until it does.
        Full versions are routed to every replica that lists them.
        """
        fixed = []
        for url in self.config.urls:
            try:
                listed = await self._listed(url)
            except httpx.HTTPError as exc:
                self._unanswered(url, exc)
                continue
            self._unanswered_checks.pop(url, None)
            for version, source in list(self._kinds.items()):
                name, urls = self.served_name(version), self._replicas[version]
                if name not in listed:
                    if url in urls:
                        urls.remove(url)  # not routable for this version until it serves it again
                    if source.kind != "lora":
                        continue  # blue/green: the deployment starts replicas of full versions
                    try:
                        await self._load_lora(url, name, self._remote_path(source), version)
                        await self._warm_up(url, name, version)
                    except (httpx.HTTPError, ServingError) as exc:
                        log.warning("reconcile of %s on %s failed: %s", version, url, exc)
                        continue
                    fixed.append((url, version))
                if url not in urls:
                    urls.append(url)
        for version, replica in list(self._launched.items()):  # a green process is its version's only replica
            urls, healthy = self._replicas.get(version, []), await self._healthy(replica.url)
            if healthy and replica.url not in urls:
                urls.append(replica.url)
                log.warning("vLLM process of %s on %s answers again; routed to", version, replica.url)
            elif not healthy and replica.url in urls:
                urls.remove(replica.url)
                log.error("vLLM process of %s on %s does not answer; not routed to until it does", version, replica.url)
        return fixed

    def _unanswered(self, url: str, exc: httpx.HTTPError) -> None:
        """A replica did not answer a reconcile check. Under load a check can time out on a
        server that streams fine; taking it out of routing then would turn one slow control
        call into failed completions until the next check. So it leaves routing only after
        ``unanswered_checks`` failures in a row, or at once when nothing listens."""
        failures = self._unanswered_checks[url] = self._unanswered_checks.get(url, 0) + 1
        refused = isinstance(exc, httpx.ConnectError)
        if not refused and failures < self.config.unanswered_checks:
            log.warning("replica %s did not answer a check (%r, %d in a row); still routed to", url, exc, failures)
            return
        for urls in self._replicas.values():
            if url in urls:
                urls.remove(url)
                log.warning("replica %s does not answer (%r); not routed to until it does", url, exc)

    # -- requests -------------------------------------------------------------------
    async def generate(self, version: str, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        urls = self._replicas.get(version)
        if not urls:
            raise EngineUnavailableError(f"version {version!r} is not loaded", retry_after_s=1.0)
        url = urls[next(self._rr) % len(urls)]
        p = request.params
        body: dict[str, Any] = {
            "model": self.served_name(version),
            "messages": list(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        self._in_flight[version] += 1
        try:
            async with self._session().post(
                f"{url}/v1/chat/completions", json=body, headers={"X-Request-Id": request.request_id}
            ) as resp:
                async for delta in relay(resp, url):
                    yield delta
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailableError(f"vLLM {url} unreachable: {exc!r}", retry_after_s=1.0) from exc
        finally:
            self._in_flight[version] -= 1

    def _session(self) -> aiohttp.ClientSession:
        """The pool completions stream through, made on first use on the serving loop.

        aiohttp rather than httpx on this path: relaying a short stream costs it about a
        third of httpx's CPU (bench/vllm.py), and on a small machine that CPU comes out of
        vLLM's share. Control calls (load, unload, models) stay on httpx.
        """
        if self._streams is None or self._streams.closed:
            self._streams = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.config.request_timeout_s, sock_connect=self.config.connect_timeout_s
                ),
                connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=60),
            )
        return self._streams
