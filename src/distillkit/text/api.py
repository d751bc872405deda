"""The Python API behind `distill text ...`: build a config from a preset plus overrides, and run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distillkit.errors import UserError
from distillkit.text.config import DiLMConfig, preset_config


def apply_overrides(cfg: DiLMConfig, overrides: list[str]) -> DiLMConfig:
    """Apply `key=value` overrides (dotted keys for nested settings, JSON values, e.g. gm.outer_loops=50)."""
    data: dict[str, Any] = cfg.model_dump()
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not key=value; write e.g. --set gm.outer_loops=50")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise UserError(f"unknown setting '{key}'; see config.json of a run for the names")
            node = node[p]
        if parts[-1] not in node:
            raise UserError(f"unknown setting '{key}'; see config.json of a run for the names")
        node[parts[-1]] = value
    try:
        return DiLMConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise UserError(f"bad value for setting '{loc}': {err['msg']}; fix the override or config file") from None


def build_config(
    dataset: str,
    preset: str,
    dpcs: list[int] | None = None,
    seed: int | None = None,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> DiLMConfig:
    """Preset (or a config.json) + explicit fields + `key=value` overrides, validated."""
    if config_file is not None:
        cfg = DiLMConfig.model_validate(json.loads(Path(config_file).read_text()))
    else:
        cfg = preset_config(preset, dataset)
    data = cfg.model_dump()
    if dpcs:
        data["dpcs"] = list(dpcs)
    if seed is not None:
        data["seed"] = seed
    data.update({k: v for k, v in fields.items() if v is not None})
    return apply_overrides(DiLMConfig.model_validate(data), overrides or []).check()
