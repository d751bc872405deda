"""The one exception type for user mistakes, and the one way a bad setting becomes a line the user can act on."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

if typing.TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable server).

    The message names the problem and the fix, in one line.
    """


def _short(value: Any, limit: int = 60) -> str:
    """`value` as the user would recognise it, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _allowed(msg: str) -> str:
    """Pydantic's message turned into what is allowed: 'Input should be X' -> 'should be X'."""
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if msg.startswith("Input should be "):
        return "should be " + msg.removeprefix("Input should be ")
    return msg[:1].lower() + msg[1:]


def _submodel(annotation: Any) -> type | None:
    """The settings class (pydantic model or dataclass) inside an annotation like `ICLConfig | None`, if any."""
    from pydantic import BaseModel

    candidates = [annotation, *typing.get_args(annotation)]
    return next(
        (c for c in candidates if isinstance(c, type) and (issubclass(c, BaseModel) or dataclasses.is_dataclass(c))),
        None,
    )


def _fields(model: type) -> dict[str, Any]:
    """Field name -> annotation of a pydantic model or a dataclass."""
    if dataclasses.is_dataclass(model):
        return {f.name: f.type for f in dataclasses.fields(model)}
    return {name: f.annotation for name, f in model.model_fields.items()}


def known_settings(model: type | None, path: tuple[Any, ...]) -> list[str]:
    """The field names `model` accepts at the nested `path` (empty when unknown)."""
    for part in path:
        annotation = _fields(model).get(str(part)) if model is not None else None
        model = _submodel(annotation) if annotation is not None else None
    return sorted(_fields(model)) if model is not None else []


def validation_message(
    error: ValidationError,
    model: type[BaseModel] | None = None,
    names: Mapping[str, str] | None = None,
    fix: str = "fix the --set or --config value",
) -> str:
    """One line for a pydantic ValidationError: the key, the value given, and what is allowed.

    `model` (the validated class) lets an unknown key list the known ones; `names` maps a dotted key to what
    the user typed for it (e.g. {"epochs": "--epochs"}); `fix` ends the line.
    """
    errors = error.errors(include_url=False)
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = (names or {}).get(loc, loc) or "settings"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = known_settings(model, err["loc"][:-1])
        where = f"known here: {', '.join(known)}" if known else "see config.json of a run for the names"
        text = f"unknown setting {key} (given {_short(err['input'])}); {where}"
    elif err["type"] == "missing":
        text = f"{key} is required; {fix}"
    else:
        text = f"{key}: got {_short(err['input'])}, {_allowed(err['msg'])}; {fix}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return " ".join(text.split())


def flag_names(*keys: str) -> dict[str, str]:
    """{"num_teachers": "--num-teachers", ...}: how settings that came from command-line flags are named."""
    return {k: "--" + k.replace("_", "-") for k in keys}


def validated(model: type[BaseModel], values: Mapping[str, Any], flags: bool = False) -> Any:
    """`model.model_validate(values)`; a bad value becomes a UserError from `validation_message`.

    With `flags`, the values came from command-line flags, and the line names them as such.
    """
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(values))
    except ValidationError as e:
        if flags:
            msg = validation_message(e, model, flag_names(*values), fix="pass another value")
        else:
            msg = validation_message(e, model)
        raise UserError(msg) from None
