"""The 12 DialogBench task definitions, loaded from `tasks.json` (the one place they are written down)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from distillkit.errors import UserError

LANGS = ("en", "zh")
DIMENSIONS = ("correctness", "coherence", "consistency", "safety")


@dataclass(frozen=True)
class Task:
    """One task: identity, dimension, optional slot, and prompt pieces per language."""

    abbr: str
    name: str
    dimension: str
    slot: str | None
    chat_instruction: dict[str, str]
    base_instruction: dict[str, str]
    base_slot_header: dict[str, str] | None
    base_header: dict[str, str]
    official: dict[str, str]
    paper: dict[str, float]

    def chat_slot_header(self, lang: str) -> str | None:
        """Header of the slot in the chat prompt (e.g. 'Question'), None for tasks without a slot."""
        return None if self.slot is None else headers(lang)[self.slot]


@lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads(resources.files("distillkit.dialogbench").joinpath("tasks.json").read_text("utf-8"))


def headers(lang: str) -> dict[str, str]:
    """Section headers ('Dialogue content', 'Candidate options', slot names) in `lang`."""
    return _raw()["headers"][check_lang(lang)]


@lru_cache(maxsize=1)
def all_tasks() -> dict[str, Task]:
    """All 12 tasks keyed by abbreviation, in the paper's column order."""
    out = {}
    for t in _raw()["tasks"]:
        out[t["abbr"]] = Task(
            abbr=t["abbr"],
            name=t["name"],
            dimension=t["dimension"],
            slot=t["slot"],
            chat_instruction=t["chat"],
            base_instruction=t["base"],
            base_slot_header=t["base_slot_header"],
            base_header=t["base_header"],
            official=t["official"],
            paper=t["paper"],
        )
    order = ["SF", "IC", "KRG", "CRG", "DI", "MRG", "PRG", "RC", "ED", "NLI", "DS", "OD"]
    return {k: out[k] for k in order}


def get_task(abbr: str) -> Task:
    """Look a task up by abbreviation (case-insensitive) or full name."""
    tasks = all_tasks()
    key = abbr.strip().upper()
    if key in tasks:
        return tasks[key]
    for t in tasks.values():
        if t.name.lower() == abbr.strip().lower():
            return t
    raise UserError(f"unknown task {abbr!r}; choose from {', '.join(tasks)}")


def parse_tasks(spec: str | list[str] | None) -> list[Task]:
    """Turn 'SF,IC' / ['SF','IC'] / None (all) / 'all' into a list of tasks."""
    if spec is None:
        return list(all_tasks().values())
    items = spec.split(",") if isinstance(spec, str) else [s for part in spec for s in part.split(",")]
    items = [s for s in (i.strip() for i in items) if s]
    if not items or items == ["all"]:
        return list(all_tasks().values())
    return [get_task(s) for s in items]


def check_lang(lang: str) -> str:
    """Validate a language code."""
    if lang not in LANGS:
        raise UserError(f"unknown language {lang!r}; use one of {', '.join(LANGS)}")
    return lang
