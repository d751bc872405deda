"""`--set key.sub=value` overrides and explicit flags, shared by every command that takes them.

Resolution order, lowest to highest: the preset, the `--config` file, `--set key=value`, then the flags the
user actually typed (e.g. `--ipc 3`). A flag left out never overrides anything; a flag and a `--set` of the same
key that disagree are refused with one line.
"""

from __future__ import annotations

import json
from typing import Any

from distillkit.errors import UserError

MISSING = object()  # what get_dotted returns for a key that is not there


def get_dotted(data: dict[str, Any], key: str) -> Any:
    """The value at `a.b.c` in nested `data`, or `MISSING`."""
    node: Any = data
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return MISSING
        node = node[p]
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Write `value` at `a.b.c` in nested `data`, creating missing levels."""
    *parents, last = key.split(".")
    node = data
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


def _known(data: dict[str, Any], key: str) -> list[str]:
    """The keys of the deepest level of `data` that the dotted `key` reaches."""
    node = data
    for p in key.split(".")[:-1]:
        if not isinstance(node.get(p), dict):
            break
        node = node[p]
    return sorted(node)


def apply_overrides(data: dict[str, Any], items: list[str], known_only: bool = False) -> dict[str, Any]:
    """Write each `dotted.key=value` (value parsed as JSON when it can be) into the nested dict `data`.

    With `known_only`, a key that `data` does not already hold is refused with one clear line;
    otherwise missing levels are created (the caller's typed config then validates them).
    """
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"override {item!r} is not key=value; write e.g. --set apm.iterations=300")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if known_only and get_dotted(data, key) is MISSING:
            raise UserError(f"unknown setting '{key}' (given {raw!r}); known here: {', '.join(_known(data, key))}")
        set_dotted(data, key, value)
    return data


def typed_flags(section: str = "", /, **values: Any) -> dict[str, tuple[str, Any]]:
    """{setting: (its flag, the typed value or None)} for `apply_flags`, each flag named after its key
    (`max_length` -> `--max-length`); with a `section`, the settings are `section.key`."""
    prefix = f"{section}." if section else ""
    return {f"{prefix}{key}": (f"--{key.replace('_', '-')}", value) for key, value in values.items()}


def check_conflicts(sets: list[str], flags: dict[str, tuple[str, Any]]) -> None:
    """Refuse a flag the user passed (value not None) whose key a `--set` gives another value.

    `flags` maps a dotted key to (flag name, value), e.g. {"apm.ipc": ("--ipc", 3)}.
    """
    given = apply_overrides({}, sets)
    for key, (flag, value) in flags.items():
        other = get_dotted(given, key)
        if value is not None and other is not MISSING and other != value:
            raise UserError(f"{flag} {value} and --set {key}={json.dumps(other)} disagree; pass only one of them")


def apply_flags(data: dict[str, Any], sets: list[str], flags: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The flags the user passed (value not None) written over `data` (the preset/config/--set settings)."""
    check_conflicts(sets, flags)
    for key, (_, value) in flags.items():
        if value is not None:
            set_dotted(data, key, value)
    return data
