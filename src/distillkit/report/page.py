"""One self-contained report.html per run folder, for every system and for the demo folder.

The page holds the folder's report.md (when there is one, with its pictures inlined), then each run found
in the folder (the folder itself, or runs below it, e.g. one per system in the demo): warnings first,
tables from its metrics, the pictures it wrote that the page does not show yet, a DialogBench evaluation's
items (folded, filterable), and its resolved config.json folded away.
"""

from __future__ import annotations

from pathlib import Path

from distillkit.errors import UserError
from distillkit.report.html import (
    esc,
    figure_html,
    json_details,
    markdown_html,
    page_html,
    table_html,
    warnings_html,
)
from distillkit.report.views import RunView, is_run, view_run
from distillkit.runs import atomic_path, read_json

MAX_DEPTH = 3


def find_runs(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """`root` if it is a run, else the runs below it (up to `depth` levels, not looking inside a run)."""
    if is_run(root):
        return [root]
    if depth == 0:
        return []
    return [run for sub in sorted(p for p in root.iterdir() if p.is_dir()) for run in find_runs(sub, depth - 1)]


def pictures(run: Path, runs: list[Path]) -> tuple[list[Path], list[Path]]:
    """PNGs in the run folder itself, and those in its sub-folders (two levels, other runs left out)."""
    own = sorted(run.glob("*.png"), key=lambda p: (not p.stem.startswith("grid"), p.name))  # distilled images first
    below = sorted(
        p
        for p in [*run.glob("*/*.png"), *run.glob("*/*/*.png")]
        if not any(other != run and other in p.parents for other in runs)
    )
    return own, below


def run_section(run: Path, view: RunView, root: Path, runs: list[Path], shown: set[Path], heading: str = "") -> str:
    """HTML of one run: heading (an <h3>, none if empty), warnings, tables, pictures not shown yet, blocks
    (e.g. the per-item browser), config."""
    parts = ["<section>\n", f"<h3>{esc(heading)}</h3>\n" if heading else ""]
    parts.append(warnings_html(view.warnings))
    parts += [table_html(t) for t in view.tables if t.rows]
    if run == root:  # pictures drawn from the numbers, only where the folder's own markdown has none
        parts += [figure_html(data, caption) for caption, data in view.figures]
    own, below = pictures(run, runs)
    for path in own:
        if path.resolve() not in shown:
            parts.append(figure_html(path.read_bytes(), path.relative_to(root).as_posix()))
            shown.add(path.resolve())
    extra = [p for p in below if p.resolve() not in shown]
    if extra:
        figs = "".join(figure_html(p.read_bytes(), p.relative_to(root).as_posix()) for p in extra)
        parts.append(f"<details><summary>More pictures ({len(extra)})</summary>\n{figs}</details>\n")
    parts += view.blocks
    if (run / "config.json").is_file():
        parts.append(json_details("Resolved config (config.json)", read_json(run / "config.json")))
    parts.append("</section>\n")
    return "".join(parts)


def split_title(markdown: str) -> tuple[str | None, str]:
    """The text of a leading '# ' heading (None without one) and the markdown after it."""
    lines = markdown.lstrip().split("\n", 1)
    if lines[0].startswith("# "):
        return lines[0][2:].strip(), lines[1] if len(lines) > 1 else ""
    return None, markdown


def render_report(root: Path) -> str:
    """The report page of run folder `root` as one HTML string (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give a run folder (one with metrics.json or report.md)")
    runs = find_runs(root)
    md_path = root / "report.md"
    if not runs and not md_path.is_file():
        raise UserError(f"{root} holds no run (no metrics.json, summary.json or report.md below it); give a run folder")
    views = {run: view_run(run) for run in runs}
    shown: set[Path] = set()
    title, narrative = None, ""
    if md_path.is_file():
        title, text = split_title(md_path.read_text(encoding="utf-8"))
        narrative = markdown_html(text, root, shown)
    if title is None:
        title = f"{views[root].kind}: {root.name}" if runs == [root] else root.name
    body = [
        f"<h1>{esc(title)}</h1>\n",
        f'<p class="meta">Run folder <code>{esc(root.resolve())}</code></p>\n',
        narrative,
    ]
    if runs == [root]:
        body += ["<h2>Run details</h2>\n" if narrative else "", run_section(root, views[root], root, runs, shown)]
    elif runs:
        body.append("<h2>Runs in this folder</h2>\n")
        body += [
            run_section(run, views[run], root, runs, shown, f"{views[run].kind}: {run.relative_to(root).as_posix()}")
            for run in runs
        ]
    return page_html(title, "".join(body))


def write_report_html(run_dir: Path) -> Path:
    """Write `run_dir/report.html` (atomically) and return its path."""
    run_dir = Path(run_dir)
    page = render_report(run_dir)
    path = run_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
