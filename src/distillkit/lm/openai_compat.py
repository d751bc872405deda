"""Any OpenAI-compatible server (hosted APIs, vLLM, llama.cpp server, `transformers serve`).

Async requests under a concurrency limit; retries with exponential backoff on 429, 5xx, timeouts,
dropped connections and unparseable answers; an on-disk response cache keyed by the request;
token accounting. The API key is read from the environment only and never written anywhere.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openai

from distillkit.errors import UserError
from distillkit.lm.cache import ResponseCache, request_key
from distillkit.lm.config import GenerationConfig, apply_stop

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.APIResponseValidationError,
)


class _Garbage(Exception):
    """The server answered 200 but not with a usable completion."""


class OpenAICompatLM:
    """Chat (and plain completion) client for an OpenAI-compatible endpoint.

    `chat(conversations, config)` returns one reply per conversation, in order; `usage` counts
    prompt/completion tokens, requests, retries and cache hits.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        cache_dir: Path | None | bool = None,
    ):
        from distillkit.lm.offline import cache_dir as default_cache

        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        if cache_dir is False:
            self.cache = None
        else:
            self.cache = ResponseCache(Path(cache_dir or default_cache()) / "responses.sqlite")
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0, "cache_hits": 0}

    def describe(self) -> dict:
        """What to record with results (never the key)."""
        return {
            "backend": "openai",
            "name": self.model,
            "base_url": self.base_url,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
        }

    def _client(self) -> openai.AsyncOpenAI:
        key = os.environ.get(self.api_key_env) or "EMPTY"
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=self.timeout)

    # ------------------------------------------------------------------ one request with retries
    async def _request(self, client: openai.AsyncOpenAI, kind: str, payload: dict[str, Any]) -> str:
        key = request_key({"base_url": self.base_url, "kind": kind, **payload})
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.usage["cache_hits"] += 1
            return hit["text"]
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                self.usage["requests"] += 1
                if kind == "chat":
                    resp = await client.chat.completions.create(**payload)
                    text = resp.choices[0].message.content if resp.choices else None
                else:
                    resp = await client.completions.create(**payload)
                    text = resp.choices[0].text if resp.choices else None
                if not isinstance(text, str):
                    raise _Garbage(f"no text in the answer: {str(resp)[:120]}")
                if resp.usage is not None:
                    self.usage["prompt_tokens"] += resp.usage.prompt_tokens or 0
                    self.usage["completion_tokens"] += resp.usage.completion_tokens or 0
                if self.cache is not None:
                    self.cache.put(key, {"text": text})
                return text
            except (*_RETRYABLE, _Garbage, ValueError) as e:
                last = e
                if attempt == self.max_retries:
                    break
                self.usage["retries"] += 1
                await asyncio.sleep(self._delay(attempt, e))
            except openai.AuthenticationError:
                raise UserError(
                    f"the server at {self.base_url} refused the API key; set {self.api_key_env} in the environment"
                ) from None
            except openai.NotFoundError as e:
                raise UserError(
                    f"the server at {self.base_url} does not know model {self.model!r} or the "
                    f"endpoint ({_short(e)}); check --model and --base-url"
                ) from None
            except openai.APIStatusError as e:
                raise UserError(
                    f"the server at {self.base_url} rejected the request (HTTP {e.status_code}: "
                    f"{_short(e)}); check the model name and generation settings"
                ) from None
        raise UserError(_explain(last, self.base_url, self.max_retries)) from None

    def _delay(self, attempt: int, err: Exception) -> float:
        retry_after = None
        resp = getattr(err, "response", None)
        if resp is not None:
            try:
                retry_after = float(resp.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        base = retry_after if retry_after is not None else self.backoff * (2**attempt)
        return min(self.max_backoff, base) * (0.5 + random.random() / 2)

    # ------------------------------------------------------------------ many requests
    async def _run_all(self, kind: str, payloads: list[dict], on_result: Callable[[int, str], None] | None):
        sem = asyncio.Semaphore(self.concurrency)
        results: list[str | None] = [None] * len(payloads)
        errors: list[Exception] = []
        async with self._client() as client:

            async def one(i: int) -> None:
                async with sem:
                    try:
                        results[i] = await self._request(client, kind, payloads[i])
                    except UserError as e:
                        errors.append(e)
                        return
                if on_result is not None:
                    on_result(i, results[i])

            await asyncio.gather(*(one(i) for i in range(len(payloads))))
        if errors:
            raise errors[0]
        return results

    def _sync(self, coro):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.update(r=asyncio.run(coro)))
        t.start()
        t.join()
        return box["r"]

    def _gen_args(self, config: GenerationConfig) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, "max_tokens": config.max_new_tokens, "seed": config.seed}
        if config.do_sample:
            args.update(temperature=config.temperature, top_p=config.top_p)
        else:
            args.update(temperature=0.0)
        if config.stop:
            args["stop"] = list(config.stop)
        return args

    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
        extra: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    ) -> list[str]:
        """One reply per conversation; finished replies reach `on_result` even if a later one fails.

        `extra`: more request fields (e.g. `response_format`, `presence_penalty`, a per-item `seed`), one dict
        for all conversations or one per conversation; they are part of the cache key.
        """
        config = config or GenerationConfig()
        extras = [extra or {}] * len(conversations) if extra is None or isinstance(extra, dict) else list(extra)
        payloads = [
            {**self._gen_args(config), **x, "messages": list(m)} for m, x in zip(conversations, extras, strict=True)
        ]
        out = self._sync(self._run_all("chat", payloads, on_result))
        return [apply_stop(t, config.stop) for t in out]

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Plain completions (the legacy /completions endpoint)."""
        config = config or GenerationConfig()
        payloads = [{**self._gen_args(config), "prompt": p} for p in prompts]
        return [apply_stop(t, config.stop) for t in self._sync(self._run_all("completion", payloads, on_result))]

    def loglikelihood(self, requests):  # noqa: D401 - documented refusal
        """Not available: chat endpoints return no prompt log-probabilities."""
        raise UserError("log-likelihood scoring needs a local model; chat endpoints return no prompt log-probs")


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:160]


def _explain(err: Exception | None, base_url: str, retries: int) -> str:
    if isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError):
        return f"cannot reach the server at {base_url} after {retries} retries; start it or fix --base-url"
    if isinstance(err, openai.APITimeoutError):
        return f"the server at {base_url} timed out {retries + 1} times; check it is up, or lower --concurrency"
    if isinstance(err, openai.RateLimitError):
        return f"the server at {base_url} kept rate-limiting (HTTP 429) after {retries} retries; lower --concurrency"
    if isinstance(err, openai.InternalServerError):
        return f"the server at {base_url} kept failing (HTTP {err.status_code}) after {retries} retries; check its logs"
    return (
        f"the server at {base_url} answered garbage ({_short(err) if err else 'no answer'}) after "
        f"{retries} retries; check that it speaks the OpenAI API"
    )
