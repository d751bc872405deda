"""The Python API behind `distill text ...`: build a config from a preset plus overrides, and run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distillkit.errors import UserError
from distillkit.overrides import apply_overrides as apply_dotted
from distillkit.text.config import DiLMConfig, preset_config


def apply_overrides(cfg: DiLMConfig, overrides: list[str]) -> DiLMConfig:
    """Apply `key=value` overrides (dotted keys for nested settings, JSON values, e.g. gm.outer_loops=50)."""
    data = apply_dotted(cfg.model_dump(), overrides, known_only=True)
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
