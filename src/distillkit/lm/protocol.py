"""The one language-model protocol every backend implements (local, GGUF, any OpenAI-compatible server).

DialogBench and DiLM are typed against `LanguageModel`, so a new backend is one class with these methods:
log-likelihood scoring (base mode), generation and chat, a description for the run's provenance, and token
usage. Nothing here imports torch, so a server client stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from distillkit.lm.config import GenerationConfig

Conversation = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": ...}, ...]


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Log-probability of one continuation given its context."""

    logprob: float  # sum over continuation tokens (natural log)
    n_tokens: int  # continuation tokens scored
    n_chars: int  # characters of the continuation (after whitespace moved from the context)
    is_greedy: bool  # every continuation token was the argmax
    truncated: bool  # the context was cut on the left to fit the window

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.n_tokens, 1)

    @property
    def perplexity(self) -> float:
        import math

        return math.exp(-self.mean_logprob)


@runtime_checkable
class LanguageModel(Protocol):
    """What DialogBench and DiLM ask of a language model."""

    usage: dict[str, int]  # token and request counts since the model was opened

    def describe(self) -> dict[str, Any]:
        """Backend, model, revision or file hash, dtype/device or server URL (masked): recorded with results."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probability of each continuation after its context."""
        ...

    def loglikelihood_detailed(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """`loglikelihood` with token and character counts (for the token-mean and per-character norms)."""
        ...

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """A continuation of each prompt; `on_result(i, text)` as each finishes."""
        ...

    def chat(
        self,
        conversations: Sequence[Conversation],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """A reply to each conversation; `on_result(i, text)` as each finishes."""
        ...
