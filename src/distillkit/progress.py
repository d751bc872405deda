"""Progress bars for long loops (tqdm), quiet when output is not a terminal unless asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(
    it: Iterable | None = None,
    desc: str | None = None,
    total: int | None = None,
    leave: bool = True,
    disable: bool = False,
    initial: int = 0,
) -> tqdm:
    """A tqdm bar (over `it`, or updated by hand when `it` is None); DISTILLKIT_PROGRESS=0 turns every bar off."""
    off = disable or os.environ.get("DISTILLKIT_PROGRESS", "1") == "0"
    return tqdm(it, desc=desc, total=total, leave=leave, disable=off, initial=initial, dynamic_ncols=True)


def status(message: str) -> None:
    """A one-line note above the progress bars (a retry, a wait) in a terminal; silent in logs and tests."""
    if os.environ.get("DISTILLKIT_PROGRESS", "1") != "0" and sys.stderr.isatty():
        tqdm.write(message, file=sys.stderr)
