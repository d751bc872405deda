"""What every console script shares: one line on stderr for every way a command ends badly.

Exit codes: 0 done; 2 a mistake the user can fix (an `error: ...` line); 130 interrupted by SIGINT (Ctrl-C)
and 143 by SIGTERM, each with the line INTERRUPTED (finished work stays on disk; the same command resumes).

Also what the commands share in their signatures: `option_groups` (a group of typer options that a command takes
as one value) and `SettingsOptions` (--config, --set, --print-config); typed values become flags through
`distillkit.overrides.typed_flags`.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from distillkit.errors import UserError

if TYPE_CHECKING:
    from pydantic import BaseModel

ENV_DEFAULTS = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "TOKENIZERS_PARALLELISM": "false",
}

INTERRUPTED = "interrupted; rerun the same command to resume"

_OS_HINTS = {
    errno.ENOENT: "check the path (for an output: choose a place that can be created)",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "it is read-only; choose another path",
    errno.EISDIR: "it is a directory; pass a file",
    errno.ENOTDIR: "a part of that path is a file; choose another path",
    errno.EEXIST: "something is already there; choose another path",
    errno.ENOSPC: "the disk is full; free some space, then rerun the same command to resume",
}

_signal_received: int | None = None


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGINT and SIGTERM both unwind the command as a KeyboardInterrupt; which one it was is remembered.

    From here on, reports of what the interrupt cut short (asyncio's cancelled requests, objects that could not
    be finalised) are silenced: the one INTERRUPTED line says it all.
    """
    global _signal_received
    _signal_received = signum
    logging.getLogger("asyncio").disabled = True
    sys.unraisablehook = lambda _unraisable: None
    warnings.simplefilter("ignore")  # e.g. "coroutine ... was never awaited" from connections cut short
    raise KeyboardInterrupt


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(" ".join(message.split()) + "\n")  # one write: lines of parallel ranks never interleave
    sys.stderr.flush()
    raise SystemExit(code)


def _interrupted() -> NoReturn:
    signum = _signal_received or signal.SIGINT
    _fail(INTERRUPTED, 128 + signum)


def usage_message(e: typer.TyperException) -> str:
    """A click/typer usage error (missing or unknown option, bad value) as one line naming the fix."""
    ctx = getattr(e, "ctx", None)
    where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    message = e.format_message().rstrip(".").replace(": Input should be ", ": should be ")
    return f"error: {message}{where}"


def os_message(e: OSError) -> str:
    """A file-system error as one line: the path, what went wrong, and what to do."""
    what = (e.strerror or str(e)).lower()
    path = f"{e.filename}: " if e.filename else ""
    return f"error: {path}{what}; {_OS_HINTS.get(e.errno or 0, 'check the path and rerun')}"


def _run(app: typer.Typer, argv: list[str] | None) -> int:
    """Run the app and return its exit code; every user-facing failure ends in `_fail`."""
    try:
        code = app(args=argv, standalone_mode=False)  # returns the exit code of typer.Exit / Ctrl-C (130)
    except UserError as e:
        _fail(f"error: {e}")
    except typer.TyperException as e:  # click/typer usage errors (missing/unknown option, bad value)
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare group name: its help, as click does
            print(e.format_message(), file=sys.stderr)
            raise SystemExit(2) from None
        _fail(usage_message(e), getattr(e, "exit_code", 2) or 2)
    except typer.Abort:  # typer's answer to end of input (EOF)
        _fail("error: aborted: the input ended; rerun the same command to resume", 1)
    except OSError as e:
        if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _fail(os_message(e))
    except Exception as e:
        pydantic = sys.modules.get("pydantic")
        if pydantic is None or not isinstance(e, pydantic.ValidationError):
            raise
        from distillkit.errors import validation_message

        _fail(f"error: {validation_message(e)}")  # a config the command did not validate itself
    return code if isinstance(code, int) else 0


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While the command runs, SIGINT and SIGTERM raise KeyboardInterrupt (main thread only); restored after."""
    global _signal_received
    _signal_received = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run_app(app: typer.Typer, argv: list[str] | None = None, setup: Callable[[], None] | None = None) -> None:
    """Run a typer app the way every console script does.

    A UserError, a usage error, a bad setting or a file problem ends with one `error:` line and exit code 2;
    SIGINT/SIGTERM end with the line INTERRUPTED and exit code 130/143. `setup` (e.g. registering
    subcommands) runs after the signal handlers are in place.
    """
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    with _signals_interrupt():
        try:
            if setup is not None:
                setup()
            code = _run(app, argv)
        except KeyboardInterrupt:
            _interrupted()
        if _signal_received is not None or code == 130:  # typer turns Ctrl-C into a returned 130
            _interrupted()
    if code:
        raise SystemExit(code)


@dataclass(frozen=True)
class SettingsOptions:
    """How a command's settings arrive besides its own flags: --config, --set, the typed flags that several
    commands share (`flags`: {key: (flag, value or None when not typed)}, e.g. --seed); and --print-config."""

    config: Path | None
    sets: list[str]
    print_config: bool
    flags: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def printed(self, cfg: BaseModel | dict[str, Any]) -> bool:
        """With --print-config, print `cfg` as YAML and say so (the command then returns before any work)."""
        if self.print_config:
            from distillkit.settings import to_yaml

            typer.echo(to_yaml(cfg), nl=False)
        return self.print_config

    def begin(self, cfg: Any, out: Path | None = None) -> str | None:
        """Unless --print-config printed `cfg` (None then, and nothing is touched): the device `cfg.device` names,
        checked, once the folder `out` (when given) exists."""
        if self.printed(cfg):
            return None
        from distillkit.devices import resolve_device
        from distillkit.runs import make_dir

        device = str(resolve_device(cfg.device))
        if out is not None:
            make_dir(out)
        return device


def option_groups(**groups: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let a command take a group of shared typer options as one value.

    Each keyword names one of the command's parameters and gives its group: a function whose own parameters are
    typer options. Typer sees the group's options in that parameter's place (same order, names, defaults and
    help); when the command runs, the group is called with their values and its result is the parameter. A
    command whose group parameter follows options with defaults declares its parameters keyword-only (`*,`).
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature, members = _spliced_signature(command, groups)

        @functools.wraps(command)
        def with_groups(**values: Any) -> Any:
            for name, group in groups.items():
                values[name] = group(**{key: values.pop(key) for key in members[name]})
            return command(**values)

        with_groups.__signature__ = signature  # type: ignore[attr-defined]
        with_groups.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return with_groups

    return decorate


def _spliced_signature(
    command: Callable[..., Any], groups: dict[str, Callable[..., Any]]
) -> tuple[inspect.Signature, dict[str, list[str]]]:
    """`command`'s signature with each group parameter replaced by its group's options (all keyword-only, as
    typer passes them), and the names of each group's options."""
    signature = inspect.signature(command, eval_str=True)
    if missing := set(groups) - set(signature.parameters):
        raise TypeError(f"{command.__name__} has no parameter {', '.join(sorted(missing))} for an option group")
    members: dict[str, list[str]] = {}
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        own = [param]
        if param.name in groups:
            own = list(inspect.signature(groups[param.name], eval_str=True).parameters.values())
            members[param.name] = [p.name for p in own]
        params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    if len({p.name for p in params}) != len(params):
        raise TypeError(f"{command.__name__}: an option group repeats the name of another parameter")
    return signature.replace(parameters=params), members


def entry(app: typer.Typer) -> Callable[[], None]:
    """Build a console-script entry point for `app`."""
    return lambda: run_app(app)
