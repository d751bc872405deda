"""Reasoning models: keep their `<think>...</think>` text for the logs, answer from what follows it.

Servers return reasoning either inline (`<think>...</think>answer`), with only the closing tag (chat
templates that open the block in the prompt), or in a separate `reasoning_content` field, which the
OpenAI-compatible backend folds into the inline form so that every reply is one string.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"
_BLOCK = re.compile(r"<think>.*?</think>", re.S)


def join_reasoning(reasoning: str | None, content: str | None) -> str:
    """One reply string: the reasoning (if any) in a think block, then the answer."""
    content = content or ""
    return f"{OPEN}{reasoning}{CLOSE}{content}" if reasoning else content


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer): think blocks removed from the answer; an unclosed block leaves no answer."""
    if CLOSE in text and OPEN not in text.split(CLOSE, 1)[0]:  # block opened by the prompt
        head, text = text.split(CLOSE, 1)
        parts = [head]
    else:
        parts = []
    parts += [m[len(OPEN) : -len(CLOSE)] for m in _BLOCK.findall(text)]
    answer = _BLOCK.sub("", text)
    if OPEN in answer:  # cut off mid-thought (token limit): everything after the tag is reasoning
        answer, rest = answer.split(OPEN, 1)
        parts.append(rest)
    return "\n".join(p.strip() for p in parts if p.strip()), answer.strip()


def answer_text(text: str) -> str:
    """What answer extraction should read: the reply without its reasoning."""
    return split_reasoning(text)[1] if OPEN in text or CLOSE in text else text
