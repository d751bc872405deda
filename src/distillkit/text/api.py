"""The Python API behind `distill text ...`: build a config from a preset plus overrides, and run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillkit.overrides import apply_overrides as apply_dotted
from distillkit.text.config import DiLMConfig, config_from_dict, preset_config, read_config_file


def apply_overrides(cfg: DiLMConfig, overrides: list[str]) -> DiLMConfig:
    """Apply `key=value` overrides (dotted keys for nested settings, JSON values, e.g. gm.outer_loops=50)."""
    data = apply_dotted(cfg.model_dump(), overrides, known_only=True)
    return config_from_dict(data)


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
        cfg = read_config_file(config_file)
    else:
        cfg = preset_config(preset, dataset)
    data = cfg.model_dump()
    if dpcs:
        data["dpcs"] = list(dpcs)
    if seed is not None:
        data["seed"] = seed
    data.update({k: v for k, v in fields.items() if v is not None})
    return apply_overrides(config_from_dict(data), overrides or []).check()
