"""The Python API behind `distill text ...`: build a config from a preset plus overrides, and run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillkit.overrides import apply_overrides as apply_dotted
from distillkit.settings import Flags, choose_preset, layered, merge_settings
from distillkit.text.config import DiLMConfig, config_from_dict, preset_settings


def apply_overrides(cfg: DiLMConfig, overrides: list[str]) -> DiLMConfig:
    """Apply `key=value` overrides (dotted keys for nested settings, JSON values, e.g. gm.outer_loops=50)."""
    return config_from_dict(apply_dotted(cfg.model_dump(), overrides))


def resolve_text_config(
    preset: str | None, config: Path | None = None, sets: list[str] | None = None, flags: Flags | None = None
) -> DiLMConfig:
    """`distill text run`'s settings: preset < --config file < --set items < typed flags, validated and checked.

    The preset is resolved for the dataset the other layers name (default fine_foods); with no `preset`, the one
    the config file names (a run's config.json), else quick.
    """
    settings = layered(None, config, sets, flags)
    preset = choose_preset(preset, settings)
    dataset = settings.get("dataset") if isinstance(settings.get("dataset"), str) else "fine_foods"
    return config_from_dict(merge_settings(preset_settings(preset, dataset), settings)).check()


def build_config(
    dataset: str | None,
    preset: str | None,
    dpcs: list[int] | None = None,
    seed: int | None = None,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> DiLMConfig:
    """Preset < `config_file` < `key=value` overrides < explicit arguments (those not None), validated."""
    values = {"dataset": dataset, "dpcs": list(dpcs) if dpcs else None, "seed": seed, **fields}
    flags = {key: (f"--{key.replace('_', '-')}", value) for key, value in values.items()}
    return resolve_text_config(preset, config_file, overrides, flags)
