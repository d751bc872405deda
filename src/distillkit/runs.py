"""Run directories: the resolved config, metrics as JSON, and a guard against resuming with another config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distillkit.errors import UserError


def make_dir(path: Path, what: str = "--out") -> Path:
    """Create directory `path` (and its parents); a file in the way or an unwritable place is one clear line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; pass a directory (a new one, or an earlier run's)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create directory {path} for {what} ({(e.strerror or str(e)).lower()}); "
            "choose a path in a folder you can write to"
        ) from None
    return path


def check_out_file(path: Path, what: str = "--out") -> Path:
    """Refuse an output file path that is a directory, or whose folder cannot be created, before any work."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; pass a file path, e.g. {path / 'results.json'}")
    make_dir(path.parent, f"the folder of {what}")
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (write a temp file, then rename), so a kill never leaves half a file."""
    path = Path(path)
    make_dir(path.parent, f"the folder of {path.name}")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file, turning a corrupt one into a UserError."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg}); delete it or restore it from a backup") from None


def prepare_run_dir(run_dir: Path, config: dict[str, Any], extendable: tuple[str, ...] = ()) -> Path:
    """Create `run_dir` with config.json, or check that an existing one holds the same config.

    Resuming a directory with a different config is refused: nothing there is touched. Top-level keys in
    `extendable` only say *what* to compute (e.g. which IPCs), each result cached apart, so they may change:
    config.json then records the new values.
    """
    run_dir = make_dir(run_dir)
    cfg_path = run_dir / "config.json"
    config = json.loads(json.dumps(config, sort_keys=True, default=str))
    old = read_json(cfg_path) if cfg_path.exists() else {}
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k not in extendable)
    if old and diff:
        raise UserError(
            f"{run_dir} holds a run with a different config (differs in: {', '.join(diff)}); "
            "resume with the same settings or choose a new --out directory"
        )
    if old != config:
        write_json(cfg_path, config)
    return run_dir
