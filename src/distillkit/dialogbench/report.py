"""Side-by-side reports of evaluation runs: markdown + CSV tables, per-task bars, radar and letter plots."""

from __future__ import annotations

import csv
from pathlib import Path

from distillkit.dialogbench.tasks import DIMENSIONS, all_tasks
from distillkit.errors import UserError
from distillkit.plots import letter_bars, task_bars, task_radar
from distillkit.report import write_report_html
from distillkit.runs import read_json


def load_run(run_dir: Path) -> dict:
    """metrics.json + config.json of one run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir} has no metrics.json; give a folder written by `dialogbench eval`")
    m = read_json(run_dir / "metrics.json")
    m["config"] = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
    m["run_dir"] = str(run_dir)
    return m


def run_label(m: dict) -> str:
    official = ", official prompts" if m.get("prompts") == "official" else ""
    return f"{Path(str(m['model'])).name} ({m['mode']}{', circular' if m.get('circular') else ''}{official})"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def comparison_rows(runs: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows: model, release date, mode, headline, prompts, the 12 tasks, dimensions, overall, unparsed."""
    tasks = list(all_tasks())
    header = [
        "model",
        "released",
        "mode",
        "scored by",
        "prompts",
        *tasks,
        *DIMENSIONS,
        "overall",
        "overall_strict",
        "unparsed",
        "items",
    ]
    rows = []
    for m in runs:
        t = m["tasks"]
        rows.append(
            [
                run_label(m),
                m.get("release_date") or "?",
                m["mode"],
                m["headline"],
                m.get("prompts"),  # None (a dash) for runs from before --prompts
                *[t.get(a, {}).get("accuracy") for a in tasks],
                *[m["dimensions"].get(d) for d in DIMENSIONS],
                m["overall"],
                m.get("overall_strict"),
                m.get("unparsed", ""),
                f"{m['n_done']}/{m['n_items']}",
            ]
        )
    return header, rows


def accuracy_series(runs: list[dict]) -> dict[str, list[float]]:
    """Run label -> accuracy per task, in the paper's task order (0 for a task a run lacks)."""
    return {run_label(m): [m["tasks"].get(a, {}).get("accuracy") or 0 for a in all_tasks()] for m in runs}


def write_plots(runs: list[dict], out: Path) -> list[str]:
    """tasks_bar.png, tasks_radar.png and letters.png in `out`; returns their file names."""
    tasks, series = list(all_tasks()), accuracy_series(runs)
    task_bars(tasks, series, out / "tasks_bar.png", "DialogBench accuracy per task")
    task_radar(tasks, series, out / "tasks_radar.png")
    predicted = {run_label(m): m["letters"]["predicted"] for m in runs}
    letter_bars(runs[0]["letters"]["gold"], predicted, out / "letters.png")
    return ["tasks_bar.png", "tasks_radar.png", "letters.png"]


def render_markdown(runs: list[dict], images: list[str] | None = None, heading: str = "#") -> str:
    """The comparison as markdown (tables, letter distribution, skipped items, image links)."""
    header, rows = comparison_rows(runs)
    lines = [
        f"{heading} DialogBench results",
        "",
        "Accuracy (%) per task; overall = unweighted mean of the tasks present. Base runs are scored by "
        "option likelihood (`token` = the paper's per-token perplexity), chat runs by answer extraction "
        "(`lenient` unless named otherwise); `overall_strict` counts only answers that start with the letter. "
        "`prompts`: distillkit's templates, or the release's own prompts (`official`).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v) if v is None or isinstance(v, float) else str(v) for v in r) + " |")
    lines += [
        "",
        f"{heading}# Predicted letters (all rotations)",
        "",
        "| run | A | B | C | D | none | gold A/B/C/D |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in runs:
        p, g = m["letters"]["predicted"], m["letters"]["gold"]
        lines.append(
            f"| {run_label(m)} | {p['A']} | {p['B']} | {p['C']} | {p['D']} | {p['none']} | "
            f"{g['A']}/{g['B']}/{g['C']}/{g['D']} |"
        )
    circ = [m for m in runs if m.get("circular")]
    if circ:
        lines += [
            "",
            f"{heading}# Circular evaluation",
            "",
            "An instance counts only if it is answered right with the gold answer in every position.",
            "",
            "| run | overall | overall circular |",
            "|---|---|---|",
        ]
        lines += [f"| {run_label(m)} | {_fmt(m['overall'])} | {_fmt(m.get('overall_circular'))} |" for m in circ]
    doms = sorted({d for m in runs for d in m["domains"]})
    if doms:
        lines += [
            "",
            f"{heading}# Per domain",
            "",
            "| domain | " + " | ".join(run_label(m) for m in runs) + " |",
            "|---|" + "---|" * len(runs),
        ]
        for d in doms:
            cells = [_fmt(m["domains"].get(d, {}).get("accuracy")) for m in runs]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
    skipped = [(run_label(m), s) for m in runs for s in m.get("skipped", [])]
    if skipped:
        lines += ["", f"{heading}# Skipped instances", ""] + [f"- {r}: {s}" for r, s in skipped]
    if images:
        lines += [""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write report.md (and report.html), results.csv and plots for the given run folders; returns report.md."""
    runs = [load_run(r) for r in run_dirs]
    if not runs:
        raise UserError("no runs given; pass one or more run folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = comparison_rows(runs)
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    images = write_plots(runs, out)
    md = out / "report.md"
    md.write_text(render_markdown(runs, images), encoding="utf-8")
    write_report_html(out)
    return md
