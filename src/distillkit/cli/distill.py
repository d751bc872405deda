"""`distill`: image and text dataset distillation, and the demo."""

from __future__ import annotations

from pathlib import Path

import typer

from distillkit.cli.common import run_app

app = typer.Typer(help="distillkit: distil datasets and measure what they are worth.", no_args_is_help=True)


def register_systems() -> None:
    """Add the `image` and `text` command groups (imported only when `distill` runs)."""
    from distillkit.cli import image, text

    app.add_typer(image.app, name="image", help="APM image dataset distillation.")
    app.add_typer(text.app, name="text", help="DiLM text dataset distillation.")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Directory for the demo's runs and report."),
    full: bool = typer.Option(False, "--full", help="The longer showcase (APM at IPC 1 as well as 10)."),
) -> None:
    """Run every system's quick job on embedded data and write one report (report.md)."""
    from distillkit.demo import run_demo
    from distillkit.runs import make_dir

    report = run_demo(make_dir(out), full=full)
    typer.echo(f"report: {report} (and {Path(report).with_name('report.html')})")


@app.command("report")
def report(
    run_dirs: list[Path] = typer.Argument(..., help="run folders (an image, text or DialogBench run, or a demo)"),
) -> None:
    """Render each run folder as one self-contained report.html (plots embedded, tables, warnings, config)."""
    from distillkit.report import write_report_html

    for run_dir in run_dirs:
        typer.echo(f"wrote {write_report_html(run_dir)}")


def main() -> None:
    run_app(app, setup=register_systems)


if __name__ == "__main__":
    main()
