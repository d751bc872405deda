"""Scores from per-item records: per task, dimension, domain and overall; letter distributions."""

from __future__ import annotations

from collections import Counter, defaultdict
from statistics import mean

from distillkit.dialogbench.stats import N_BOOT, bootstrap_cis, letter_scores, position_bias
from distillkit.dialogbench.tasks import all_tasks

NORMS = ("token", "sum", "char")


def _share(xs: list[bool]) -> float | None:
    """Percentage true, unrounded: means are taken of these, and rounded once at the end."""
    return 100.0 * sum(xs) / len(xs) if xs else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def _pct(xs: list[bool]) -> float | None:
    return _round(_share(xs))


def _variants(mode: str) -> tuple[str, ...]:
    return NORMS if mode == "base" else ("strict", "lenient", "anchored", "original")


def summarize(
    records: list[dict], mode: str, headline: str, circular: bool, seed: int = 0, n_boot: int = N_BOOT
) -> dict:
    """Aggregate unit records into the metrics dict written as metrics.json.

    `headline` is the normalisation (base) or extractor (chat) behind `accuracy`. The task accuracy uses
    the unrotated items; with `circular`, an instance counts for `circular_accuracy` only if every rotation
    is right. Overall = unweighted mean of the task accuracies (the paper's definition). Headline accuracies
    get 95 % bootstrap intervals (`ci95`, `dimensions_ci95`, `overall_ci95`; `n_boot` resamples drawn from
    `seed`), each task per-letter precision/recall/F1 (`per_letter`), and `position` holds accuracy by gold
    letter (see `distillkit.dialogbench.stats`).
    """
    variants = _variants(mode)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    tasks: dict[str, dict] = {}
    exact: dict[str, dict[str, float | None]] = {}  # the task accuracies before rounding
    for abbr in all_tasks():
        recs = by_task.get(abbr)
        if not recs:
            continue
        first = [r for r in recs if r["rotation"] == 0]
        acc = {"accuracy": _share([r["pred"][headline] == r["gold"] for r in first])}
        for v in variants:
            acc[f"accuracy_{v}"] = _share([r["pred"][v] == r["gold"] for r in first])
        if circular:
            per_inst: dict[str, list[bool]] = defaultdict(list)
            for r in recs:
                per_inst[r["id"]].append(r["pred"][headline] == r["gold"])
            acc["circular_accuracy"] = _share([all(v) for v in per_inst.values()])
            acc["rotation_accuracy"] = _share([r["pred"][headline] == r["gold"] for r in recs])
        exact[abbr] = acc
        tasks[abbr] = t = {"n": len(first), **{k: _round(x) for k, x in acc.items()}}
        if mode == "chat":
            t["unparsed"] = sum(r["pred"][headline] is None for r in first)
    out: dict = {"tasks": tasks, "headline": headline}
    out["overall"] = round(mean(a["accuracy"] for a in exact.values()), 2) if tasks else None
    out["overall_complete"] = len(tasks) == len(all_tasks())
    for v in variants:
        vals = [a[f"accuracy_{v}"] for a in exact.values()]
        out[f"overall_{v}"] = round(mean(vals), 2) if vals else None
    if circular and tasks:
        out["overall_circular"] = round(mean(a["circular_accuracy"] for a in exact.values()), 2)
    dims: dict[str, list[float]] = defaultdict(list)
    for abbr, a in exact.items():
        dims[all_tasks()[abbr].dimension].append(a["accuracy"])
    out["dimensions"] = {d: round(mean(v), 2) for d, v in dims.items()}
    dom: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        if r["rotation"] == 0:
            dom[r["domain"]].append(r["pred"][headline] == r["gold"])
    out["domains"] = {d: {"n": len(v), "accuracy": _pct(v)} for d, v in sorted(dom.items())}
    out["letters"] = letter_distribution(records, headline)
    cis = bootstrap_cis(records, headline, seed=seed, n_boot=n_boot)
    per_letter = letter_scores(records, headline)
    for abbr, t in tasks.items():
        t["ci95"] = cis["tasks"].get(abbr)
        t["per_letter"] = per_letter.get(abbr)
    out["overall_ci95"] = cis["overall"]
    out["dimensions_ci95"] = cis["dimensions"]
    out["bootstrap"] = {"n_boot": n_boot, "seed": seed, "level": 95}
    out["position"] = position_bias(records, headline)
    if mode == "chat":
        out["unparsed"] = sum(t["unparsed"] for t in tasks.values())
    return out


def letter_distribution(records: list[dict], headline: str) -> dict:
    """How often each letter is predicted and is gold (over all rotations), unparsed as 'none'."""
    pred = Counter(r["pred"][headline] or "none" for r in records)
    gold = Counter(r["gold"] for r in records)
    keys = ["A", "B", "C", "D", "none"]
    return {"predicted": {k: pred.get(k, 0) for k in keys}, "gold": {k: gold.get(k, 0) for k in keys[:4]}}
