"""Settings as data: preset files shipped in the package, config files, `--set` items and typed flags.

Resolution, lowest to highest: the preset (a YAML file under `distillkit/presets/<system>/`), the `--config`
file (YAML or JSON, e.g. a run's config.json), `--set section.key=value` items, then the flags the user typed.
The result is validated by the system's pydantic model (unknown keys refused); a bad key or value is one line
naming the key, the value given and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from distillkit.errors import UserError, validation_message
from distillkit.overrides import apply_flags, apply_overrides

Model = TypeVar("Model", bound=BaseModel)
Flags = dict[str, tuple[str, Any]]


def _preset_dir(system: str) -> Any:
    return resources.files("distillkit") / "presets" / system


def preset_names(system: str) -> list[str]:
    """The presets shipped for `system` (file names under presets/<system>/ without .yaml)."""
    folder = _preset_dir(system)
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: Any, label: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{label} is not valid YAML/JSON ({first}); fix or remove it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{label} must hold a mapping of settings (a JSON object), e.g. 'apm: {{lr_img: 3}}'")
    return data


def load_preset(system: str, name: str) -> dict[str, Any]:
    """The settings of preset `name` of `system`; an unknown name is one line listing the known ones.

    A preset that starts with `extends: <other>` is the other preset with its own settings over it.
    """
    known = preset_names(system)
    if name not in known:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(known)}")
    raw = _read_yaml(_preset_dir(system) / f"{name}.yaml", f"preset file {system}/{name}.yaml")
    base = raw.pop("extends", None)
    return merge_settings(load_preset(system, base), raw) if base else raw


def load_table(system: str, name: str) -> dict[str, Any]:
    """A table shipped beside the presets (presets/<system>/tables/<name>.yaml), e.g. a paper's settings."""
    return _read_yaml(_preset_dir(system) / "tables" / f"{name}.yaml", f"table {system}/tables/{name}.yaml")


# What a run records in config.json beside its settings: content hashes of the data, the model and the pools it
# was given. They are not settings, so a run's config.json given back with --config leaves them out.
RECORDED = ("teacher_pool", "expert_pool", "data_sha256", "model_identity")


def read_config_file(path: Path | str) -> dict[str, Any]:
    """Nested settings from a YAML or JSON file (a tune run's preset.yaml, or a run's config.json)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--config {path} is a directory; pass a YAML or JSON file, e.g. a run's config.json")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass a YAML or JSON file")
    return {k: v for k, v in _read_yaml(path, f"config file {path}").items() if k not in RECORDED}


def merge_settings(base: dict, extra: dict) -> dict:
    """Nested settings: `extra`'s values over `base`'s, section by section."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge_settings(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def require_dotted(sets: list[str], sections: dict[str, str]) -> None:
    """Refuse the old flat `--set key=value` where a key belongs to a section: say the dotted form.

    `sections` maps a flat key to its section, e.g. {"segment_size": "apm"}.
    """
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key in sections:
            raise UserError(
                f"--set {item} names no section; write --set {sections[key]}.{item.strip()} "
                "(--set takes dotted section.key=value, as config.json is laid out)"
            )


def layered(
    base: dict[str, Any] | None = None,
    config: Path | None = None,
    sets: list[str] | None = None,
    flags: Flags | None = None,
) -> dict[str, Any]:
    """The unvalidated settings: `base` (a preset) < the config file < `--set` items < typed flags."""
    sets = list(sets or [])
    data = merge_settings(base or {}, read_config_file(config) if config is not None else {})
    data = apply_overrides(data, sets)
    return apply_flags(data, sets, flags or {})


def choose_preset(typed: str | None, settings: dict[str, Any], default: str = "quick") -> str:
    """The preset a job starts from: the one typed, else the one the --config file names (a run's config.json
    names its own), else `default`; written into `settings` so the resolved config records it."""
    name = typed or settings.get("preset") or default
    settings["preset"] = name
    return str(name)


def validate(model: type[Model], data: dict[str, Any], flags: Flags | None = None) -> Model:
    """`model` from nested settings; a bad key or value is one UserError line (a typed flag named as typed)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UserError(explain(e, model, flags)) from None


def explain(error: ValidationError, model: type[BaseModel], flags: Flags | None = None) -> str:
    """One line for a settings error: the key (or the typed flag), the value given and what is allowed."""
    names = {key: flag for key, (flag, value) in (flags or {}).items() if value is not None}
    first = ".".join(str(p) for p in error.errors()[0]["loc"])
    fix = "pass another value" if first in names else "fix the --set or --config value"
    return validation_message(error, model, names, fix)


def resolve(
    model: type[Model],
    base: dict[str, Any] | None = None,
    config: Path | None = None,
    sets: list[str] | None = None,
    flags: Flags | None = None,
) -> Model:
    """preset `base` -> `config` file -> `--set` items -> typed `flags` -> `model` validation."""
    return validate(model, layered(base, config, sets, flags), flags)


def to_yaml(cfg: BaseModel | dict[str, Any], note: str | None = None) -> str:
    """A resolved config as YAML (what `--print-config` shows); `note` becomes a leading comment."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return (f"# {note}\n" if note else "") + text


def resolve_with_preset(
    make: Callable[[str, dict[str, Any]], Model],
    preset: str | None,
    config: Path | None = None,
    sets: list[str] | None = None,
    flags: Flags | None = None,
) -> Model:
    """A command's settings: preset < --config file < --set items < typed flags, built by `make(preset, settings)`.

    With no `preset`, the one the config file names (a run's config.json), else quick."""
    settings = layered(None, config, sets, flags)
    return make(choose_preset(preset, settings), settings)
