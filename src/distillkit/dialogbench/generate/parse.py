"""Strict validation of one generation reply into the instance schema; the pipeline places the gold option."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from distillkit.dialogbench.generate.plan import Job
from distillkit.dialogbench.generate.prompts import response_schema
from distillkit.dialogbench.schema import LETTERS, Instance

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


class InvalidReply(ValueError):
    """The reply cannot become an instance; the message says why (sent back to the model for repair)."""


def extract_json(text: str) -> dict[str, Any]:
    """The one JSON object in a reply (a ```json fence is tolerated, nothing else)."""
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise InvalidReply(f"not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(obj, dict):
        raise InvalidReply(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _check_keys(obj: dict, schema: dict) -> None:
    missing = [k for k in schema["required"] if k not in obj]
    extra = [k for k in obj if k not in schema["properties"]]
    if missing:
        raise InvalidReply(f"missing key(s) {', '.join(missing)}")
    if extra:
        raise InvalidReply(f"unexpected key(s) {', '.join(extra)}")


def _strings(value: Any, name: str, n: int) -> list[str]:
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, str) for v in value):
        raise InvalidReply(f"`{name}` must be a list of exactly {n} strings")
    return [v.strip() for v in value]


def options_from(obj: dict, job: Job, n_options: int) -> tuple[dict[str, str], str]:
    """Options A.. and the gold letter: the gold text goes to the job's assigned letter."""
    letters = list(LETTERS[:n_options])
    if job.gold is None:  # position mitigation off: the model's own order and choice
        texts = _strings(obj["options"], "options", n_options)
        idx = obj["answer_index"]
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n_options:
            raise InvalidReply(f"`answer_index` must be an integer from 0 to {n_options - 1}")
        return dict(zip(letters, texts, strict=True)), letters[idx]
    if not isinstance(obj["correct"], str):
        raise InvalidReply("`correct` must be a string")
    wrong = _strings(obj["distractors"], "distractors", n_options - 1)
    pos = letters.index(job.gold)
    texts = wrong[:pos] + [obj["correct"].strip()] + wrong[pos:]
    return dict(zip(letters, texts, strict=True)), job.gold


def parse_reply(text: str, job: Job, n_options: int, provenance: dict[str, Any]) -> Instance:
    """Validate one reply against the response schema and the instance schema, or raise InvalidReply."""
    obj = extract_json(text)
    _check_keys(obj, response_schema(job.task, n_options, job.gold is None))
    dialogue = obj["dialogue"]
    if not isinstance(dialogue, list) or not all(isinstance(t, dict) for t in dialogue):
        raise InvalidReply("`dialogue` must be a list of {speaker, text} objects")
    options, label = options_from(obj, job, n_options)
    record = {
        "id": job.id,
        "task": job.task,
        "language": job.lang,
        "domain": job.domain or "unspecified",
        "dialogue": dialogue,
        "slot": obj.get("slot"),
        "options": options,
        "label": label,
        "provenance": provenance,
    }
    try:
        return Instance.model_validate(record)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "instance"
        raise InvalidReply(f"{loc}: {err['msg'].removeprefix('Value error, ')}") from None
