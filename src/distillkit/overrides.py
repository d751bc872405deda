"""`--set key.sub=value` overrides, shared by every command that takes them."""

from __future__ import annotations

import json
from typing import Any

from distillkit.errors import UserError


def apply_overrides(data: dict[str, Any], items: list[str], known_only: bool = False) -> dict[str, Any]:
    """Write each `dotted.key=value` (value parsed as JSON when it can be) into the nested dict `data`.

    With `known_only`, a key that `data` does not already hold is refused with one clear line;
    otherwise missing levels are created (the caller's typed config then validates them).
    """
    for item in items:
        if "=" not in item:
            raise UserError(f"override '{item}' is not key=value; write e.g. --set apm.iterations=300")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                if known_only:
                    raise UserError(f"unknown setting '{key}'; see config.json of a run for the names")
                node[p] = {}
            node = node[p]
        if known_only and parts[-1] not in node:
            raise UserError(f"unknown setting '{key}'; see config.json of a run for the names")
        node[parts[-1]] = value
    return data
