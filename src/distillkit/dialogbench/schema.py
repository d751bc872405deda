"""The DialogBench instance schema (pydantic) and JSONL reading/writing with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from distillkit.dialogbench.tasks import all_tasks
from distillkit.errors import UserError

LETTERS = "ABCD"


class Turn(BaseModel):
    """One utterance of the two-party dialogue."""

    speaker: str = Field(min_length=1)
    text: str = Field(min_length=1)


class Instance(BaseModel):
    """One multiple-choice question about a dialogue."""

    id: str = Field(min_length=1)
    task: str
    language: Literal["en", "zh"] = "en"
    domain: str = "unknown"
    dialogue: list[Turn] = Field(min_length=1)
    slot: str | None = None
    options: dict[str, str]
    label: str
    provenance: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        v = v.strip().upper()
        if v not in all_tasks():
            raise ValueError(f"unknown task {v!r}; choose from {', '.join(all_tasks())}")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 4:
            raise ValueError(f"{len(v)} options given; at most 4 (A-D) are allowed")
        if len(v) < 2:
            raise ValueError(f"{len(v)} option given; at least 2 are needed")
        keys = list(v)
        if keys != list(LETTERS[: len(v)]):
            raise ValueError(f"option letters must be {', '.join(LETTERS[: len(v)])} in order, got {keys}")
        for k, text in v.items():
            if not str(text).strip() or str(text).strip().lower() == "none":
                raise ValueError(f"option {k} is empty or 'None'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Instance:
        if self.label not in self.options:
            raise ValueError(f"gold letter {self.label!r} is not among the options {list(self.options)}")
        task = all_tasks()[self.task]
        if task.slot is not None and not (self.slot or "").strip():
            raise ValueError(f"task {self.task} needs its slot ({task.slot}) but it is missing or empty")
        return self

    @property
    def gold_text(self) -> str:
        return self.options[self.label]


def instance_from_dict(obj: Any, where: str) -> Instance:
    """Validate one record; turn a validation error into a one-line UserError naming `where`."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}; fix or remove that line")
    try:
        return Instance.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "instance"
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: {loc}: {msg}; fix that line or remove it") from None


def read_jsonl(path: str | Path) -> list[Instance]:
    """Read and validate a JSONL file of instances; the first bad line ends with a one-line UserError."""
    return read_jsonl_lenient(path, skip_invalid=False)[0]


def read_jsonl_lenient(path: str | Path, skip_invalid: bool = True) -> tuple[list[Instance], list[dict]]:
    """Read instances; with `skip_invalid`, bad lines are skipped and returned as {'line', 'reason'} records."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"instance file {path} does not exist; check the path")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a .jsonl file (use `dialogbench import` for official folders)")
    out: list[Instance] = []
    skipped: list[dict] = []
    seen: set[str] = set()
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise UserError(f"{path}:{n}: not UTF-8 text; save the file as UTF-8") from None
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: malformed JSON ({e.msg}); fix or remove that line") from None
                inst = instance_from_dict(obj, f"{path}:{n}")
                if inst.id in seen:
                    raise UserError(f"{path}:{n}: duplicate id {inst.id!r}; ids must be unique")
            except UserError as e:
                if not skip_invalid:
                    raise
                skipped.append({"line": n, "reason": str(e)})
                continue
            seen.add(inst.id)
            out.append(inst)
    return out, skipped


def write_jsonl(path: str | Path, instances: list[Instance]) -> Path:
    """Write instances as JSONL (UTF-8, one object per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for inst in instances:
            f.write(json.dumps(inst.model_dump(), ensure_ascii=False) + "\n")
    return path


def sample_path() -> Path:
    """Path of the shipped English sample set."""
    from importlib import resources

    return Path(str(resources.files("distillkit.dialogbench").joinpath("data/sample_en.jsonl")))


def load_sample() -> list[Instance]:
    """The shipped sample set (English, >= 3 instances per task)."""
    return read_jsonl(sample_path())
