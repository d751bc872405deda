"""`python -m distillkit.report RUN_DIR...`: write (or rewrite) report.html in each run folder."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from distillkit.errors import UserError
from distillkit.report import write_report_html


def main(run_dirs: list[Path] = typer.Argument(..., help="run folders (an image, text or DialogBench run, or a demo)")):
    """Render each run folder as one self-contained report.html beside its report.md."""
    for run_dir in run_dirs:
        try:
            print(f"wrote {write_report_html(run_dir)}")
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(main)
