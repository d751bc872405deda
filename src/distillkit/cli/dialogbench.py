"""`dialogbench`: evaluate LLMs on the 12 DialogBench tasks, and generate new instances."""

from __future__ import annotations

import typer

from distillkit.cli.common import run_app

app = typer.Typer(help="DialogBench: LLMs as human-like dialogue systems.", no_args_is_help=True)


def main() -> None:
    run_app(app)
