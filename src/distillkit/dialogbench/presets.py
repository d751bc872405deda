"""DialogBench's presets: YAML files under distillkit/presets/dialogbench/, one section per command.

`default` is the settings' own defaults; `paper` is the published protocol (docs/settings.md lists where it
departs). A preset sits under the --config file, the --set items and the typed flags, as for every system.
"""

from __future__ import annotations

from typing import Any, Literal

from distillkit.settings import choose_preset, load_preset, merge_settings

DEFAULT = "default"


def preset_settings(command: Literal["eval", "generate"], typed: str | None, file: dict[str, Any]) -> dict[str, Any]:
    """The --config `file`'s settings over the preset's `command` section: the preset typed, else the one the file
    names (a run's config.json names its own), else `default`; the name is recorded as `preset`."""
    name = choose_preset(typed, file, DEFAULT)
    return merge_settings(load_preset("dialogbench", name).get(command, {}), file)
