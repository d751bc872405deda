"""What every console script shares: one-line errors and offline-friendly environment defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import typer

from distillkit.errors import UserError

ENV_DEFAULTS = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "TOKENIZERS_PARALLELISM": "false",
}


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run a typer app; a UserError (or a missing file) ends with one line on stderr and exit code 2."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        app(args=argv, standalone_mode=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as e:
        print(f"error: file not found: {e.filename or e}; check the path", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        raise SystemExit(code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            print(f"error: {e.format_message()}", file=sys.stderr)
            raise SystemExit(2) from None
        raise


def entry(app: typer.Typer) -> Callable[[], None]:
    """Build a console-script entry point for `app`."""
    return lambda: run_app(app)
