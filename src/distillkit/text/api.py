"""The Python API behind `distill text ...`: build a config from a preset plus overrides, and run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillkit.overrides import apply_overrides as apply_dotted
from distillkit.overrides import typed_flags
from distillkit.settings import Flags, choose_preset, layered, merge_settings
from distillkit.text.config import DiLMConfig, config_from_dict, preset_settings
from distillkit.text.gm import GMConfig


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
    return resolve_text_config(preset, config_file, overrides, typed_flags(**values))


TINY_GM = {
    "inner_loops": 2,
    "learner_steps": 1,
    "syn_batch": 4,
    "real_batch": 4,
    "rt_sets": 2,
    "dms_interval": 1,
    "learner_batch": 8,
    "checkpoint_every": 1,
}
"""Stage 2 (gradient matching) at toy sizes, for tests and benchmarks: batches of 4 texts, 2 inner loops."""


def tiny_gm_config(**fields: Any) -> GMConfig:
    """A GMConfig of `TINY_GM`'s toy sizes; `fields` set any field (the outer loops, among others)."""
    return GMConfig(**(TINY_GM | fields))


def tiny_overrides(stage1_steps: int, outer_loops: int, full_runs: int, methods: list[str]) -> list[str]:
    """`key=value` overrides that shrink the quick preset to a DiLM run of seconds, for tests and benchmarks: the
    random test models (tiny-gpt2 generator, tiny-bert learner), a few dozen texts, a few steps of every stage
    (checkpointed after each); `stage1_steps`, `outer_loops` (stage 2), `full_runs` and `methods` are the caller's."""
    return [
        'generator="tiny-gpt2"',
        'learner="tiny-bert"',
        "max_length=20",
        "max_train=48",
        "max_validation=16",
        "max_test=24",
        "oversample=2",
        "num_sets=2",
        "runs_per_set=1",
        "gen_batch_size=16",
        f"stage1.steps={stage1_steps}",
        "stage1.batch_size=8",
        "stage1.checkpoint_every=1",
        f"gm.outer_loops={outer_loops}",
        *(f"gm.{key}={value}" for key, value in TINY_GM.items()),
        "finetune.steps=3",
        "finetune.batch_size=8",
        "full_finetune.steps=3",
        f"full_runs={full_runs}",
        f"methods={json.dumps(methods, separators=(',', ':'))}",
    ]
