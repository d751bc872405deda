"""Continuation log-likelihoods from a `/v1/completions` answer with `echo` and `logprobs` (no torch).

A server such as vLLM scores a prompt when asked for `echo=True, logprobs=1, max_tokens=0`: the answer echoes
the prompt as tokens, each with its log-probability (`token_logprobs`), its start in the text (`text_offset`)
and the top alternatives (`top_logprobs`). The prompt is context + continuation; the continuation's tokens are
those that start at or after the end of the context; where the tokens' texts cannot place it, the context is
echoed alone and its token count marks the boundary. The pair is split the way lm-evaluation-harness splits it:
trailing whitespace of the context moves to the continuation, and a token that merges the end of the context
with the start of the continuation belongs to the context (lm-eval scores enc(context + continuation) beyond
len(enc(context)), which leaves such a token to the context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillkit.errors import UserError

ECHO_FIELDS = ("echo", "logprobs", "max_tokens")  # what scoring needs; never dropped as a refused parameter
GREEDY_TOLERANCE = 1e-6


class ServerError(UserError):
    """The server cannot serve this run at all (unreachable, silent, keeps failing, refuses the key or model)."""


class ServerCannotScore(ServerError):
    """The server returns no prompt log-probabilities: base mode cannot run against it at all."""


class NoPromptLogprobs(Exception):
    """The server's answer holds no usable prompt log-probabilities (it does not echo or score the prompt)."""


@dataclass(frozen=True)
class EchoRequest:
    """One (context, continuation) pair as a prompt: the whole text and where the continuation starts."""

    prompt: str
    context_chars: int  # the continuation starts here (after the context's trailing whitespace moved)
    n_chars: int  # characters of the continuation, moved whitespace included

    @classmethod
    def of(cls, context: str, continuation: str) -> EchoRequest:
        """lm-eval pair encoding: the context's trailing whitespace moves to the continuation."""
        stripped = context.rstrip()
        if not stripped:
            raise UserError("base mode over a server needs a non-empty context before each option")
        moved = len(context) - len(stripped)
        if not continuation and not moved:
            raise UserError("empty continuation; give non-empty options")
        return cls(context + continuation, len(stripped), len(continuation) + moved)


def echo_payload(model: str, prompts: list[str]) -> dict[str, Any]:
    """The request that makes a server score `prompts` (a list where the server takes several at once)."""
    return {
        "model": model,
        "prompt": prompts if len(prompts) > 1 else prompts[0],
        "echo": True,
        "logprobs": 1,
        "max_tokens": 0,
        "temperature": 0.0,
    }


def score_choice(
    choice: dict[str, Any], request: EchoRequest, context_tokens: int | None = None
) -> tuple[float, int, bool]:
    """(summed log-probability, tokens, all greedy) of the continuation in one echoed choice.

    Without `context_tokens` the continuation is found by `text_offset`, read relative to the end of the echoed
    text, so text a server puts in front of the prompt (a BOS token's "<s>") shifts nothing; when the tokens'
    texts do not spell the continuation (pieces of a UTF-8 character reported as "\ufffd"), `OffsetsUnusable`
    asks for `context_tokens`: how many tokens the server makes of the context alone (lm-eval's len(enc(context))).
    """
    lp = choice.get("logprobs") or {}
    offsets, values, tokens = lp.get("text_offset"), lp.get("token_logprobs"), lp.get("tokens")
    text = choice.get("text")
    if not (isinstance(text, str) and offsets and values and tokens):
        raise NoPromptLogprobs("no logprobs.token_logprobs / text_offset in the answer")
    if not text.startswith(request.prompt):
        raise NoPromptLogprobs("the answer does not echo the prompt")
    if not len(offsets) == len(values) == len(tokens):
        raise NoPromptLogprobs("tokens, offsets and log-probabilities differ in length")
    if context_tokens is None:
        picked = _by_offsets(offsets, tokens, text, request)
    else:
        picked = list(range(context_tokens, len(tokens)))
    if not picked:
        raise UserError(
            f"empty continuation after tokenisation for {request.prompt[request.context_chars :][:40]!r}; "
            "give non-empty options"
        )
    scores = [values[i] for i in picked]
    if any(not isinstance(v, int | float) for v in scores):
        raise NoPromptLogprobs("the continuation's tokens have no log-probabilities")
    tops = lp.get("top_logprobs") or []
    greedy = all(_is_top(values[i], tops[i] if i < len(tops) else None) for i in picked)
    return float(sum(scores)), len(picked), greedy


class OffsetsUnusable(Exception):
    """The tokens' texts do not spell the continuation, so their offsets cannot place it."""


def _by_offsets(offsets: list[int], tokens: list[str], text: str, request: EchoRequest) -> list[int]:
    """Indices of the tokens that start inside the continuation, checked against the continuation's text."""
    shift = offsets[-1] + len(tokens[-1]) - len(text)  # characters of the echo before the prompt
    end = len(request.prompt)
    picked = [i for i, off in enumerate(offsets) if request.context_chars <= off - shift < end]
    if not picked:  # a token merged the whole continuation into the context, if the texts are right
        if "".join(tokens)[shift : shift + end] != request.prompt:
            raise OffsetsUnusable
        return picked
    start = offsets[picked[0]] - shift
    if "".join(tokens[i] for i in picked) != request.prompt[start:end]:
        raise OffsetsUnusable
    return picked


def _is_top(value: float, top: dict[str, float] | None) -> bool:
    """The token's log-probability is the best of the alternatives (lm-eval compares values, not strings)."""
    return bool(top) and value >= max(top.values()) - GREEDY_TOLERANCE
