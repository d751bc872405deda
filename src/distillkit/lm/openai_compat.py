"""Any OpenAI-compatible server (hosted APIs, vLLM, llama.cpp server, `transformers serve`).

Async requests under a concurrency limit; a deadline per request; retries with exponential backoff on 429,
5xx, timeouts, dropped connections and unparseable answers; request parameters the server refuses (HTTP 400
naming them) are dropped once and remembered; reasoning (`reasoning_content`) is kept as a `<think>` block;
an on-disk response cache keyed by the request (safe across threads and processes); token accounting.
Base mode (`loglikelihood`) scores prompts through `/v1/completions` with echo and logprobs (vLLM and the
like; see `distillkit.lm.completions`); a server that cannot is refused with one line.
The API key is read from the environment only and never written anywhere; URLs and server messages are
shown with credentials masked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai

from distillkit.errors import UserError
from distillkit.lm.cache import ResponseCache, request_key
from distillkit.lm.completions import (
    ECHO_FIELDS,
    EchoRequest,
    NoPromptLogprobs,
    OffsetsUnusable,
    ServerCannotScore,
    ServerError,
    echo_payload,
    score_choice,
)
from distillkit.lm.config import GenerationConfig, apply_stop
from distillkit.lm.protocol import LoglikelihoodResult
from distillkit.lm.reasoning import CLOSE, join_reasoning
from distillkit.lm.secrets import mask_secrets, mask_url
from distillkit.progress import status

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
TokenParam = Literal["max_tokens", "max_completion_tokens"]
TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")
_PROTECTED = ("model", "messages", "prompt")  # never dropped: without them there is no request
_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.APIResponseValidationError,
    TimeoutError,
)


class _Garbage(Exception):
    """The server answered 200 but not with a usable completion."""


class OpenAICompatLM:
    """Chat (and plain completion) client for an OpenAI-compatible endpoint.

    `chat(conversations, config)` returns one reply per conversation, in order; `usage` counts
    prompt/completion tokens, requests, retries and cache hits; `refused` names the request parameters
    the server refused (not sent again by this client). `loglikelihood(requests)` scores (context,
    continuation) pairs, `prompts_per_request` prompts per request. `timeout` is a deadline in seconds for each
    request attempt; a request is tried at most `max_retries + 1` times. `token_param` names the token
    limit (`max_completion_tokens` for OpenAI's reasoning models); `extra_body` adds request fields.
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
        cache_size_mb: int | None = None,
        token_param: TokenParam = "max_tokens",
        extra_body: dict[str, Any] | None = None,
        prompts_per_request: int = 8,
    ):
        from distillkit.runs import cache_dir as default_cache

        if token_param not in TOKEN_PARAMS:
            raise UserError(f"token_param must be one of {', '.join(TOKEN_PARAMS)}, got {token_param!r}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = max(1, concurrency)
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.token_param = token_param
        self.extra_body = dict(extra_body or {})
        self.prompts_per_request = max(1, prompts_per_request)
        self.list_prompts = True  # the server takes several prompts per request (until it refuses a list)
        self.refused: set[str] = set()
        self._probed = False  # a request went through: the rest may go in parallel
        if cache_dir is False:
            self.cache = None
        else:
            self.cache = ResponseCache(Path(cache_dir or default_cache()) / "responses", cache_size_mb)
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0, "cache_hits": 0}

    @property
    def shown_url(self) -> str:
        """The base URL with credentials masked (for messages and saved files)."""
        return mask_url(self.base_url) or ""

    def describe(self) -> dict:
        """What to record with results (never the key)."""
        return {
            "backend": "openai",
            "name": self.model,
            "base_url": self.shown_url,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "token_param": self.token_param,
            "prompts_per_request": self.prompts_per_request,
            "refused_params": sorted(self.refused),
        }

    def _client(self) -> openai.AsyncOpenAI:
        """A client; query parameters of the base URL (api-version=..., api-key=...) go with every request."""
        key = os.environ.get(self.api_key_env) or "EMPTY"
        parts = urlsplit(self.base_url)
        return openai.AsyncOpenAI(
            base_url=urlunsplit(parts._replace(query="")),
            default_query=dict(parse_qsl(parts.query)) or None,
            api_key=key,
            max_retries=0,
            timeout=self.timeout,
        )

    # ------------------------------------------------------------------ cache
    def _key(self, kind: str, payload: dict[str, Any]) -> str:
        return request_key({"base_url": self.shown_url, "kind": kind, **payload})

    def _cached(self, kind: str, payload: dict[str, Any]) -> str | None:
        if self.cache is None or (hit := self.cache.get(self._key(kind, payload))) is None:
            return None
        self.usage["cache_hits"] += 1
        return hit["text"]

    # ------------------------------------------------------------------ one request with retries
    async def _fetch(self, client: openai.AsyncOpenAI, kind: str, payload: dict[str, Any]) -> str:
        """Send one request (retrying, dropping refused parameters); the reply goes to the cache."""
        text = await self._attempts(client, payload, lambda sent: self._send(client, kind, sent))
        if self.cache is not None:
            self.cache.put(self._key(kind, payload), {"text": text})
        return text

    async def _attempts(
        self,
        client: openai.AsyncOpenAI,
        payload: dict[str, Any],
        send: Callable[[dict[str, Any]], Awaitable[Any]],
        protected: tuple[str, ...] = _PROTECTED,
        refusal: Callable[[openai.APIStatusError, dict[str, Any]], UserError | None] | None = None,
    ) -> Any:
        """`send(payload)` until it succeeds: retried on transient failures, refused parameters dropped.

        `protected` fields are never dropped; `refusal` may turn an HTTP error into the UserError to raise.
        """
        last: Exception | None = None
        attempt = 0
        while True:
            sent = self._effective(payload)
            try:
                self.usage["requests"] += 1
                result = await asyncio.wait_for(send(sent), self.timeout)
                self._probed = True
                return result
            except openai.APIStatusError as e:
                if refusal is not None and (err := refusal(e, sent)) is not None:
                    raise err from None
                if isinstance(e, openai.BadRequestError | openai.UnprocessableEntityError):
                    param = self._refusable(e, sent, protected)
                    if param is None:
                        raise UserError(
                            f"the server at {self.shown_url} rejected the request (HTTP {e.status_code}: "
                            f"{_short(e)}); check the model name and generation settings"
                        ) from None
                    self._refuse(param)
                    continue
                if isinstance(e, openai.AuthenticationError):
                    raise ServerError(
                        f"the server at {self.shown_url} refused the API key; set {self.api_key_env} in the environment"
                    ) from None
                if isinstance(e, openai.NotFoundError):
                    raise ServerError(
                        f"the server at {self.shown_url} does not know model {self.model!r} or the "
                        f"endpoint ({_short(e)}); check --model and --base-url"
                    ) from None
                if not isinstance(e, _RETRYABLE):
                    raise UserError(
                        f"the server at {self.shown_url} rejected the request (HTTP {e.status_code}: "
                        f"{_short(e)}); check the model name and generation settings"
                    ) from None
                last = e
            except (*_RETRYABLE, _Garbage, ValueError) as e:
                last = e
            if attempt == self.max_retries:
                break
            self.usage["retries"] += 1
            delay = self._delay(attempt, last)
            status(
                f"{self.shown_url}: try {attempt + 1} of {self.max_retries + 1} failed ({_short(last)[:80]}); "
                f"retrying in {delay:.0f} s"
            )
            await asyncio.sleep(delay)
            attempt += 1
        raise ServerError(_explain(last, self.shown_url, self.max_retries, self.timeout)) from None

    async def _send(self, client: openai.AsyncOpenAI, kind: str, sent: dict[str, Any]) -> str:
        """One HTTP request; every field but the model and the input travels as extra body."""
        rest = {k: v for k, v in sent.items() if k not in _PROTECTED}
        if kind == "chat":
            resp = await client.chat.completions.create(model=sent["model"], messages=sent["messages"], extra_body=rest)
            text = _reply_text(resp.choices[0].message) if resp.choices else None
        else:
            resp = await client.completions.create(model=sent["model"], prompt=sent["prompt"], extra_body=rest)
            text = resp.choices[0].text if resp.choices else None
        if not isinstance(text, str):
            raise _Garbage(f"no text in the answer: {str(resp)[:120]}")
        if resp.usage is not None:
            self.usage["prompt_tokens"] += resp.usage.prompt_tokens or 0
            self.usage["completion_tokens"] += resp.usage.completion_tokens or 0
        return text

    # ------------------------------------------------------------------ refused parameters
    def _effective(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` without refused parameters; a refused token limit travels under its other name."""
        out = {k: v for k, v in payload.items() if k not in self.refused}
        for name, other in (TOKEN_PARAMS, TOKEN_PARAMS[::-1]):
            if name in payload and name in self.refused and other not in self.refused:
                out.setdefault(other, payload[name])
        return out

    def _refusable(
        self, err: openai.APIStatusError, sent: dict[str, Any], protected: tuple[str, ...] = _PROTECTED
    ) -> str | None:
        """The sent parameter the error names (its `param`, else the first one its message mentions)."""
        names = [k for k in sent if k not in protected]
        param = getattr(err, "param", None)
        if param not in names:
            text = f"{err.body} {err.message}"
            hits = [(m.start(), k) for k in names if (m := re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text))]
            param = min(hits)[1] if hits else None
        if param in TOKEN_PARAMS and TOKEN_PARAMS[1 - TOKEN_PARAMS.index(param)] in self.refused:
            return None  # both names refused: the limit itself is the problem, never drop it
        return param

    def _refuse(self, param: str) -> None:
        if param in self.refused:
            return  # another request learnt it meanwhile
        self.refused.add(param)
        how = (
            f"sending the token limit as {TOKEN_PARAMS[1 - TOKEN_PARAMS.index(param)]!r}"
            if param in TOKEN_PARAMS
            else "not sending it again in this run"
        )
        print(f"warning: the server at {self.shown_url} refused the parameter {param!r}; {how}", file=sys.stderr)

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
        results: list[str | None] = [None] * len(payloads)
        pending = []
        for i, p in enumerate(payloads):
            if (hit := self._cached(kind, p)) is None:
                pending.append(i)
                continue
            results[i] = hit
            if on_result is not None:
                on_result(i, hit)
        if not pending:
            return results
        sem = asyncio.Semaphore(self.concurrency)
        errors: list[Exception] = []
        async with self._client() as client:

            async def one(i: int) -> None:
                async with sem:
                    try:
                        results[i] = await self._fetch(client, kind, payloads[i])
                    except UserError as e:
                        errors.append(e)
                        return
                if on_result is not None:
                    on_result(i, results[i])

            if not self._probed:  # the first request alone: a refused parameter is learnt once, not N times
                await one(pending.pop(0))
            if not errors:
                await asyncio.gather(*(one(i) for i in pending))
        if errors:
            raise errors[0]
        return results

    def _sync(self, coro):
        """Run `coro` to completion, also when called from inside a running event loop (a notebook)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    def _gen_args(self, config: GenerationConfig, kind: str) -> dict[str, Any]:
        limit = self.token_param if kind == "chat" else "max_tokens"
        args: dict[str, Any] = {"model": self.model, limit: config.max_new_tokens, "seed": config.seed}
        if config.do_sample:
            args.update(temperature=config.temperature, top_p=config.top_p)
        else:
            args.update(temperature=0.0)
        if config.stop:
            args["stop"] = list(config.stop)
        return args | self.extra_body

    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
        extra: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    ) -> list[str]:
        """One reply per conversation; finished replies reach `on_result` even if a later one fails.

        `extra`: more request fields (e.g. `response_format`, `presence_penalty`, a per-item `seed`), one dict
        for all conversations or one per conversation; they are part of the cache key. A reasoning model's
        reasoning comes first in the reply as a `<think>...</think>` block (see `distillkit.lm.reasoning`).
        """
        config = config or GenerationConfig()
        extras = [extra or {}] * len(conversations) if extra is None or isinstance(extra, dict) else list(extra)
        payloads = [
            {**self._gen_args(config, "chat"), **x, "messages": list(m)}
            for m, x in zip(conversations, extras, strict=True)
        ]
        out = self._sync(self._run_all("chat", payloads, on_result))
        return [_stop_answer(t, config.stop) for t in out]

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Plain completions (the legacy /completions endpoint)."""
        config = config or GenerationConfig()
        payloads = [{**self._gen_args(config, "completion"), "prompt": p} for p in prompts]
        return [apply_stop(t, config.stop) for t in self._sync(self._run_all("completion", payloads, on_result))]

    # ------------------------------------------------------------------ base mode: prompt log-probabilities
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probability of each continuation given its context (`/v1/completions` with echo)."""
        return [r.logprob for r in self.loglikelihood_detailed(requests)]

    def loglikelihood_detailed(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """Like `loglikelihood`, with token/char counts and greedy flags (the server never truncates: a prompt
        beyond its window is refused by the server).

        Each pair becomes one prompt, context + continuation; `prompts_per_request` prompts travel in one
        request (one each once the server refuses a list); answers are cached per prompt.
        """
        asks = [EchoRequest.of(c, x) for c, x in requests]
        unique = list(dict.fromkeys(asks))
        scored = dict(zip(unique, self._sync(self._score_all(unique)), strict=True))
        return [
            LoglikelihoodResult(logprob=lp, n_tokens=n, n_chars=a.n_chars, is_greedy=greedy, truncated=False)
            for a in asks
            for lp, n, greedy in [scored[a]]
        ]

    def _echo_key(self, ask: EchoRequest) -> dict[str, Any]:
        return {**echo_payload(self.model, [ask.prompt]), "context_chars": ask.context_chars} | self.extra_body

    async def _score_all(self, asks: list[EchoRequest]) -> list[tuple[float, int, bool]]:
        results: dict[EchoRequest, tuple[float, int, bool]] = {}
        for a in asks:
            if self.cache is not None and (hit := self.cache.get(self._key("echo", self._echo_key(a)))) is not None:
                self.usage["cache_hits"] += 1
                results[a] = (hit["logprob"], hit["n_tokens"], hit["is_greedy"])
        pending = [a for a in asks if a not in results]
        size = max(1, self.prompts_per_request)
        batches = [pending[i : i + size] for i in range(0, len(pending), size)]
        if batches:
            sem = asyncio.Semaphore(self.concurrency)
            async with self._client() as client:

                async def one(batch: list[EchoRequest]) -> None:
                    async with sem:
                        results.update(zip(batch, await self._score_batch(client, batch), strict=True))

                if not self._probed:  # the first batch alone: a refusal is learnt once
                    await one(batches.pop(0))
                await asyncio.gather(*(one(b) for b in batches))
        return [results[a] for a in asks]

    async def _score_batch(self, client: openai.AsyncOpenAI, batch: list[EchoRequest]) -> list[tuple[float, int, bool]]:
        """Score one batch in one request; a server that takes one prompt at a time gets them one by one."""
        if len(batch) > 1 and not self.list_prompts:
            return [x for a in batch for x in await self._score_batch(client, [a])]
        payload = echo_payload(self.model, [a.prompt for a in batch]) | self.extra_body
        try:
            out = await self._attempts(
                client,
                payload,
                lambda sent: self._send_echo(client, sent, batch),
                protected=_PROTECTED + ECHO_FIELDS,
                refusal=lambda e, sent: self._echo_refusal(e, sent, len(batch)),
            )
        except _ListRefused:
            self.list_prompts = False
            print(f"warning: the server at {self.shown_url} takes one prompt per request", file=sys.stderr)
            return await self._score_batch(client, batch)
        unplaced = [k for k, x in enumerate(out) if isinstance(x, dict)]
        if unplaced:  # the tokens' texts cannot place the continuation: count the context's tokens instead
            contexts = [batch[k].prompt[: batch[k].context_chars] for k in unplaced]
            counts = await self._context_tokens(client, contexts)
            for k, n in zip(unplaced, counts, strict=True):
                out[k] = self._scored(out[k], batch[k], n)
        if self.cache is not None:
            for a, (lp, n, greedy) in zip(batch, out, strict=True):
                value = {"logprob": lp, "n_tokens": n, "is_greedy": greedy}
                self.cache.put(self._key("echo", self._echo_key(a)), value)
        return out

    async def _context_tokens(self, client: openai.AsyncOpenAI, contexts: list[str]) -> list[int]:
        """How many tokens the server makes of each context (its echo's length), several per request."""
        unique = list(dict.fromkeys(contexts))
        size = self.prompts_per_request if self.list_prompts else 1
        counts: dict[str, int] = {}
        for start in range(0, len(unique), size):
            chunk = unique[start : start + size]

            async def send(sent: dict[str, Any], chunk=chunk) -> list[int]:
                resp = await self._completions(client, sent)
                if len(resp.choices or []) != len(chunk):
                    raise _Garbage(f"{len(resp.choices or [])} choices for {len(chunk)} prompts")
                lps = [c.logprobs for c in sorted(resp.choices, key=lambda c: c.index or 0)]
                if any(lp is None or not lp.tokens for lp in lps):
                    raise self._no_logprobs("no logprobs.tokens in the answer")
                return [len(lp.tokens) for lp in lps]

            payload = echo_payload(self.model, chunk) | self.extra_body
            got = await self._attempts(
                client,
                payload,
                send,
                protected=_PROTECTED + ECHO_FIELDS,
                refusal=lambda e, sent, n=len(chunk): self._echo_refusal(e, sent, n),
            )
            counts.update(zip(chunk, got, strict=True))
        return [counts[c] for c in contexts]

    def _scored(self, choice: dict[str, Any], ask: EchoRequest, context_tokens: int | None = None):
        """`score_choice`, with the one-line refusal for an answer without prompt log-probabilities; the choice
        itself when its offsets cannot place the continuation (then the context's token count is needed)."""
        try:
            return score_choice(choice, ask, context_tokens)
        except OffsetsUnusable:
            return choice
        except NoPromptLogprobs as e:
            raise self._no_logprobs(str(e)) from None

    async def _completions(self, client: openai.AsyncOpenAI, sent: dict[str, Any]):
        """One `/v1/completions` request; its token usage is counted."""
        rest = {k: v for k, v in sent.items() if k not in _PROTECTED}
        resp = await client.completions.create(model=sent["model"], prompt=sent["prompt"], extra_body=rest)
        if resp.usage is not None:
            self.usage["prompt_tokens"] += resp.usage.prompt_tokens or 0
            self.usage["completion_tokens"] += resp.usage.completion_tokens or 0
        return resp

    async def _send_echo(self, client: openai.AsyncOpenAI, sent: dict[str, Any], batch: list[EchoRequest]) -> list:
        """Scores of one batch; a choice whose offsets cannot place its continuation stays a dict."""
        resp = await self._completions(client, sent)
        choices = sorted((c.model_dump() for c in resp.choices or []), key=lambda c: c.get("index") or 0)
        if len(choices) != len(batch):
            if len(batch) > 1 and len(choices) == 1:
                raise _ListRefused
            raise _Garbage(f"{len(choices)} choices for {len(batch)} prompts")
        return [self._scored(c, a) for c, a in zip(choices, batch, strict=True)]

    def _echo_refusal(self, err: openai.APIStatusError, sent: dict[str, Any], n_prompts: int) -> UserError | None:
        """The UserError for an HTTP error that means the server cannot score prompts (None: handle as usual)."""
        text = f"{err.body} {err.message}".lower()
        bad_request = isinstance(err, openai.BadRequestError | openai.UnprocessableEntityError)
        if bad_request and self._refusable(err, sent, _PROTECTED + ECHO_FIELDS) is not None:
            return None  # an optional field (from --extra-body): dropped and sent again
        if re.search(r"context length|context window|maximum context|too long", text):
            return UserError(
                f"the server at {self.shown_url} refused a prompt as too long for its window ({_short(err)}); "
                "shorten the instance or serve the model with a longer context"
            )
        if n_prompts > 1 and bad_request:
            if "prompt" in text and not re.search(r"\becho\b|logprob", text):
                raise _ListRefused
        names_scoring = re.search(r"\becho\b|logprob|max_tokens", text) is not None
        if isinstance(err, openai.NotFoundError) and re.search(
            rf"(?<![\w-]){re.escape(self.model.lower())}(?![\w-])", text
        ):
            return None  # an unknown model, not a missing endpoint
        if names_scoring or err.status_code in (400, 404, 405, 422, 501):
            return self._no_logprobs(f"HTTP {err.status_code}: {_short(err)}")
        return None

    def _no_logprobs(self, why: str) -> ServerCannotScore:
        return ServerCannotScore(
            f"the server at {self.shown_url} returns no prompt log-probabilities ({why}); base mode needs "
            "/v1/completions with echo and logprobs (e.g. vLLM); use --mode chat with this server"
        )


class _ListRefused(Exception):
    """The server does not take a list of prompts in one request."""


def _reply_text(message: Any) -> str | None:
    """The message's content, after its reasoning (`reasoning_content` or `reasoning`) as a think block."""
    content = message.content
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    if not isinstance(reasoning, str):
        return content
    return join_reasoning(reasoning, content if isinstance(content, str) else "")


def _stop_answer(text: str, stop: tuple[str, ...]) -> str:
    """Cut at a stop string in the answer, never inside the reasoning."""
    cut = text.rfind(CLOSE) + len(CLOSE) if CLOSE in text else 0
    return text[:cut] + apply_stop(text[cut:], stop)


def _short(e: Exception) -> str:
    return mask_secrets(" ".join(str(e).split()))[:160]


def _explain(err: Exception | None, url: str, retries: int, timeout: float) -> str:
    if isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError):
        return f"cannot reach the server at {url} after {retries} retries; start it or fix --base-url"
    if isinstance(err, openai.APITimeoutError | TimeoutError):
        return (
            f"the server at {url} gave no answer within {timeout:g} s, {retries + 1} times; check it is up, "
            "raise --timeout or lower --concurrency"
        )
    if isinstance(err, openai.RateLimitError):
        return f"the server at {url} kept rate-limiting (HTTP 429) after {retries} retries; lower --concurrency"
    if isinstance(err, openai.InternalServerError):
        return f"the server at {url} kept failing (HTTP {err.status_code}) after {retries} retries; check its logs"
    return (
        f"the server at {url} answered garbage ({_short(err) if err else 'no answer'}) after "
        f"{retries} retries; check that it speaks the OpenAI API"
    )
