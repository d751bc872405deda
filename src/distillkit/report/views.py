"""What a run folder says, read from its JSON files: its kind, tables, warnings and extra pictures.

One reader per kind of run: APM image run, image comparison, DiLM text run, DialogBench evaluation,
DialogBench generation; any other folder with a metrics.json gets a table of its numbers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillkit.dialogbench.tasks import DIMENSIONS, all_tasks
from distillkit.plots import task_bars
from distillkit.report.html import Table
from distillkit.report.items import run_items_html
from distillkit.runs import read_json
from distillkit.text.plot import LABELS as TEXT_METHODS

COUNT_ORDER = ["task", "domain", "answer_position", "style", "rejection_reason"]  # as in datasheet.md
GAIN_LABELS = {"apm": "teacher soft labels (L1)", "apm_hard": "hard labels (CE)"}


@dataclass
class RunView:
    """One run as the report shows it; `figures` are drawn from the numbers (name, PNG bytes), `blocks` are
    finished HTML (escaped) shown after them (e.g. the per-item browser)."""

    kind: str
    tables: list[Table]
    warnings: list[str] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)


def pm(r: dict | None, digits: int = 2) -> str:
    """'mean ± std' of a result dict, or a dash."""
    return "–" if not r else f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"


def facts(title: str, pairs: list[tuple[str, Any]]) -> Table:
    """A two-column table of the pairs whose value is known."""
    return Table(title, ["", "value"], [[k, v] for k, v in pairs if v is not None])


def image_run(m: dict) -> RunView:
    """`distill image run`: accuracy per method, gain over random subsets, teacher and cost."""
    results = Table(
        "Test accuracy",
        ["method", "images", "test acc. (%)", "± std over", "fit on own set (%)", "protocol"],
        [
            [name, r.get("n_images"), pm(r), r.get("std_over", "runs"), r.get("train_fit"), r.get("protocol")]
            for name, r in m["results"].items()
        ],
    )
    gains = Table(
        "Gain over a random real subset under the same labels (points, ± twice the spread over draws)",
        ["labels", "gain", "verdict"],
        [
            [
                GAIN_LABELS.get(key, key),
                f"{g['value']:+.2f} ± {g['uncertainty']:.2f}",
                ("a gain" if g["value"] > 0 else "a loss") if g["significant"] else "within the noise of the draws",
            ]
            for key, g in m.get("gain_over_random", {}).items()
        ],
    )
    t, secs = m.get("teacher", {}), m.get("time_seconds", {})
    run = facts(
        "Run",
        [
            ("dataset", m.get("dataset")),
            ("images per class", m.get("ipc")),
            ("preset", m.get("preset")),
            ("teacher test accuracy (%)", t.get("test_acc")),
            (
                "teacher best epoch / epochs run",
                f"{t['best_epoch']} / {t['epochs_run']}" if "best_epoch" in t else None,
            ),
            ("proxy students' agreement with the teacher (%)", m.get("proxy_fit")),
            ("distillation time (s)", secs.get("distill")),
            ("whole run (s)", secs.get("total")),
            ("peak memory, resident set (MB)", m.get("peak_rss_mb")),
        ],
    )
    return RunView("APM image distillation run", [results, gains, run], list(m.get("warnings", [])))


def image_compare(m: dict) -> RunView:
    """`distill image compare`: every method at every IPC, label mode and network, and the cost of each."""
    rows = []
    for r in m["rows"]:
        vs = None
        if r.get("vs_random") is not None:
            vs = f"{r['vs_random']:+.2f} ± {r['vs_random_uncertainty']:.2f}" + (
                "" if r.get("significant") else ", within noise"
            )
        over = " (over draws)" if r.get("std_over") == "draws" else ""
        rows.append(
            [
                r["method"],
                r["ipc"],
                r["arch"],
                r["labels"],
                r["loss"],
                pm(r) + over,
                vs,
                round(r["seconds"]),
                round(r["peak_mb"]),
            ]
        )
    header = ["method", "IPC", "network", "labels", "loss", "test acc. (%)", "vs random", "build s", "peak MB"]
    tables = [Table("Test accuracy", header, rows)]
    if m.get("cross_arch_drop"):
        drops = [[d["method"], d["ipc"], d["arch"], d["drop"]] for d in m["cross_arch_drop"]]
        tables.append(Table("Drop from the distillation network (points)", ["method", "IPC", "network", "drop"], drops))
    full = m.get("full_data")
    tables.append(
        facts(
            "Run",
            [
                ("dataset", m.get("dataset")),
                ("preset", m.get("preset")),
                ("teacher test accuracy (%)", m.get("teacher_test_acc")),
                ("full training set (%)", f"{pm(full)} ({full['protocol']})" if full else None),
            ],
        )
    )
    warnings = list(m.get("warnings", []))
    if full and not full.get("converged", True):
        warnings.append("the full-data reference was still improving at its epoch cap: its accuracy is a lower bound")
    return RunView("image distillation comparison", tables, warnings)


def text_run(m: dict) -> RunView:
    """`distill text run`: accuracy per method and DPC for each learner, and the split sizes."""
    metric = m.get("metric", "accuracy")
    tables = []
    for learner, per_method in m["learners"].items():
        dpcs = sorted({int(d) for per in per_method.values() for d in per if d != "all"})
        rows = []
        for method, per in per_method.items():
            name = TEXT_METHODS.get(method, method)
            if method == "full":
                rows.append([name, *[pm(per["all"], 1)] * len(dpcs)])
            else:
                rows.append([name, *[pm(per.get(str(d)), 1) for d in dpcs]])
        tables.append(Table(f"Test {metric} (%), learner {learner}", ["method", *[f"DPC {d}" for d in dpcs]], rows))
    splits = m.get("split_sizes", {})
    tables.append(
        Table(
            "Splits",
            ["split", "texts", "per class"],
            [[name, s.get("size"), ", ".join(str(c) for c in s.get("class_counts", []))] for name, s in splits.items()],
        )
    )
    tables.append(
        facts(
            "Run",
            [
                ("dataset", m.get("dataset")),
                ("generator checkpoint", m.get("checkpoint")),
                ("gradient-matching seconds per step", m.get("gm_seconds_per_step")),
                ("whole run (s)", m.get("seconds")),
            ],
        )
    )
    return RunView("DiLM text distillation run", tables, list(m.get("warnings", [])))


def _task_bars_png(tasks: list[str], m: dict) -> bytes:
    buf = io.BytesIO()
    series = {f"{m['model']} ({m['mode']})": [m["tasks"].get(a, {}).get("accuracy") or 0 for a in tasks]}
    task_bars(tasks, series, buf, "DialogBench accuracy per task")
    return buf.getvalue()


def dialogbench_eval(m: dict) -> RunView:
    """`dialogbench eval`: accuracy per task and dimension, predicted letters against gold, skipped items."""
    known = all_tasks()
    tasks = [a for a in known if a in m["tasks"]] + [a for a in m["tasks"] if a not in known]
    per_task = Table(
        "Accuracy per task (%)",
        ["task", "name", "dimension", "accuracy", "items"],
        [
            [
                a,
                known[a].name if a in known else "",
                known[a].dimension if a in known else "",
                t.get("accuracy"),
                t.get("n"),
            ]
            for a in tasks
            for t in [m["tasks"][a]]
        ],
    )
    summary = facts(
        "Summary",
        [
            ("model", m.get("model")),
            ("mode", m.get("mode")),
            ("prompts", m.get("prompts")),
            ("scored by", m.get("headline")),
            ("overall (%)", m.get("overall")),
            ("overall, strict (%)", m.get("overall_strict")),
            ("overall, circular (%)", m.get("overall_circular")),
            *[(f"{d} (%)", m.get("dimensions", {}).get(d)) for d in DIMENSIONS],
            ("items scored", f"{m.get('n_done')}/{m.get('n_items')}"),
            ("answers without a letter", m.get("unparsed")),
            ("seconds", m.get("seconds")),
        ],
    )
    pred, gold = m["letters"]["predicted"], m["letters"]["gold"]
    letters = Table(
        "Predicted letters against gold",
        ["letter", "predicted", "gold"],
        [[k, pred.get(k, 0), gold.get(k)] for k in pred],
    )
    warnings = list(m.get("warnings", []))
    if not m.get("complete", True):
        warnings.append(f"only {m.get('n_done')} of {m.get('n_items')} items are scored; resume the run to finish it")
    warnings += [f"skipped instance: {s}" for s in m.get("skipped", [])]
    figures = [("accuracy per task", _task_bars_png(list(tasks), m))] if tasks else []
    return RunView("DialogBench evaluation", [per_task, summary, letters], warnings, figures)


def dialogbench_generation(summary: dict, counts: dict) -> RunView:
    """`dialogbench generate`: what was planned, generated, accepted and rejected, and the dataset's counts."""
    usage = summary.get("usage", {})
    run = facts(
        "Summary",
        [
            ("planned", summary.get("planned")),
            ("generated", summary.get("generated")),
            ("valid", summary.get("valid")),
            ("repaired", summary.get("repaired")),
            ("accepted", summary.get("accepted")),
            ("rejected", summary.get("rejected")),
            ("not yet judged", summary.get("unjudged")),
            ("complete", summary.get("complete")),
            ("requests", usage.get("requests")),
            ("prompt + completion tokens", f"{usage.get('prompt_tokens')} + {usage.get('completion_tokens')}"),
            ("seconds", summary.get("seconds")),
        ],
    )
    tables = [run] + [
        Table(f"Per {key.replace('_', ' ')}", ["value", "count"], [[k, v] for k, v in c.items()] or [["(none)", 0]])
        for key, c in sorted(counts.items(), key=lambda kv: COUNT_ORDER.index(kv[0]) if kv[0] in COUNT_ORDER else 99)
    ]
    warnings = []
    if summary.get("budget_reached"):
        warnings.append("the request or token budget ran out before the plan was finished")
    if not summary.get("complete", True):
        warnings.append("generation is incomplete: run the same command again to resume it")
    if summary.get("rounding_note"):
        warnings.append(str(summary["rounding_note"]))
    return RunView("DialogBench generation", tables, warnings)


def _flat(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [pair for k, v in obj.items() for pair in _flat(v, f"{prefix}{k}.")]
    if isinstance(obj, list):
        return []
    return [(prefix.rstrip("."), obj)]


def generic_run(m: dict) -> RunView:
    """Any other metrics.json: its numbers and strings as key/value rows (lists left out)."""
    return RunView("run", [facts("Metrics", _flat(m)[:200])], list(m.get("warnings", [])))


KINDS: list[tuple[Callable[[dict], bool], Callable[[dict], RunView]]] = [
    (lambda m: "results" in m and "teacher" in m, image_run),
    (lambda m: "rows" in m and "costs" in m, image_compare),
    (lambda m: "learners" in m, text_run),
    (lambda m: "tasks" in m and "letters" in m, dialogbench_eval),
]


def is_run(folder: Path) -> bool:
    """A run folder holds metrics.json (or, for a DialogBench generation, summary.json and datasheet.json)."""
    return (folder / "metrics.json").is_file() or (
        (folder / "summary.json").is_file() and (folder / "datasheet.json").is_file()
    )


def view_run(folder: Path) -> RunView:
    """The view of one run folder (see `is_run`)."""
    if not (folder / "metrics.json").is_file():
        return dialogbench_generation(
            read_json(folder / "summary.json"), read_json(folder / "datasheet.json")["counts"]
        )
    m = read_json(folder / "metrics.json")
    if not isinstance(m, dict):
        return generic_run({"metrics": m})
    for matches, view in KINDS:
        if matches(m):
            try:
                shown = view(m)
                if view is dialogbench_eval:  # every item, as asked and answered
                    shown.blocks.append(run_items_html(folder, m["headline"]))
                return shown
            except (KeyError, TypeError, ValueError, AttributeError) as e:  # a metrics.json of another version
                fallback = generic_run(m)
                fallback.warnings.append(f"metrics.json does not have the layout this report expects ({e!r})")
                return fallback
    return generic_run(m)
