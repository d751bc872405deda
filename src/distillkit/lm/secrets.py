"""Mask credentials before text or URLs are shown to the user or written to disk."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_PATTERNS = [
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),  # Authorization: Bearer <token>
    re.compile(r"(?i)(\b(?:basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}"),  # Basic <b64>, token <value>
    re.compile(r"()\bsk-[A-Za-z0-9_-]{4,}"),  # OpenAI-style keys (sk-..., sk-proj-...)
    # key=value, key: value and "key": "value" for anything named like a credential
    re.compile(
        r"(?i)(\b[\w-]*(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd|sig|signature)"
        r"[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;}]+"
    ),
]


def mask_secrets(text: str) -> str:
    """`text` with bearer tokens, `sk-...` keys and `api_key=...`-style values replaced by ***."""
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + MASK, text)
    return text


def mask_url(url: str | None) -> str | None:
    """`url` with its userinfo and every query value masked (safe to print or save)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            query = urlencode([(k, MASK) for k, _ in parse_qsl(query, keep_blank_values=True)], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment and MASK))
    except ValueError:
        return mask_secrets(url)
