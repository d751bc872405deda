"""Uncertainty and diagnostics for DialogBench results: bootstrap confidence intervals, per-letter
precision/recall/F1, accuracy by gold position, and a paired comparison of two runs on the same items.

All percentages are 0-100 with 2 decimals, like the accuracies in metrics.json. Resampling draws from the
named `distillkit.seeding` stream "bootstrap", so the same records and seed always give the same intervals.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, chi2_contingency

from distillkit.dialogbench.tasks import all_tasks
from distillkit.errors import UserError
from distillkit.seeding import numpy_rng

LETTERS = ("A", "B", "C", "D")
N_BOOT = 1000
LEVEL = 95.0


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 2)


def _interval(samples: np.ndarray) -> list[float]:
    """The central LEVEL % percentile interval of bootstrap samples (fractions), in percent."""
    tail = (100.0 - LEVEL) / 2
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return [_r(100 * lo), _r(100 * hi)]


def _task_stream(seed: int, abbr: str) -> np.random.Generator:
    """One stream per task (by its fixed position in the paper's order), so a task's interval does not
    depend on which other tasks are in the run."""
    return numpy_rng(seed, "bootstrap", list(all_tasks()).index(abbr))


def cluster_bootstrap(num: np.ndarray, den: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """`n_boot` resampled ratios sum(num)/sum(den), resampling clusters (rows) with replacement.

    With den = 1 this is the plain bootstrap of a mean; with den = items per instance it resamples
    instances, keeping all of an instance's items (rotations) together.
    """
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    return num[idx].sum(axis=1) / den[idx].sum(axis=1)


def _correct(records: list[dict], headline: str) -> np.ndarray:
    return np.array([r["pred"][headline] == r["gold"] for r in records], dtype=float)


def first_by_task(records: list[dict]) -> dict[str, list[dict]]:
    """The unrotated records of each task, sorted by instance id (so the order they were logged in does not
    change a resample), in the paper's task order."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r["rotation"] == 0:
            by[r["task"]].append(r)
    return {a: sorted(by[a], key=lambda r: r["id"]) for a in all_tasks() if by.get(a)}


def bootstrap_cis(records: list[dict], headline: str, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """95 % percentile-bootstrap intervals of the headline accuracy per task, per dimension and overall.

    Each task resamples its unrotated instances; a dimension and the overall score are the unweighted means of
    their tasks' resampled accuracies (task by task, as the point estimates are), so their intervals carry
    every task's sampling error. Returns {"tasks": {abbr: [lo, hi]}, "dimensions": {...}, "overall": [lo, hi]}.
    """
    if n_boot < 1:
        raise UserError(f"the number of bootstrap resamples must be at least 1, got {n_boot}")
    boots: dict[str, np.ndarray] = {}
    for abbr, recs in first_by_task(records).items():
        ok = _correct(recs, headline)
        boots[abbr] = cluster_bootstrap(ok, np.ones_like(ok), _task_stream(seed, abbr), n_boot)
    dims: dict[str, list[np.ndarray]] = defaultdict(list)
    for abbr, b in boots.items():
        dims[all_tasks()[abbr].dimension].append(b)
    return {
        "tasks": {a: _interval(b) for a, b in boots.items()},
        "dimensions": {d: _interval(np.mean(bs, axis=0)) for d, bs in dims.items()},
        "overall": _interval(np.mean(list(boots.values()), axis=0)) if boots else None,
    }


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    precision = tp / n_pred if n_pred else None
    recall = tp / n_gold if n_gold else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pct = {k: None if v is None else _r(100 * v) for k, v in (("precision", precision), ("recall", recall))}
    return {"gold": n_gold, "predicted": n_pred, **pct, "f1": None if f1 is None else _r(100 * f1)}


def letter_scores(records: list[dict], headline: str) -> dict[str, dict[str, dict]]:
    """Per task, per letter A-D (unrotated items): gold count, predicted count, precision, recall and F1 (%).

    An unparsed prediction is no predicted letter and counts as a miss for the gold letter's recall; a letter
    never predicted has no precision, one never gold has no recall, and F1 needs both.
    """
    out = {}
    for abbr, recs in first_by_task(records).items():
        pred = [r["pred"][headline] for r in recs]
        gold = [r["gold"] for r in recs]
        out[abbr] = {
            k: _prf(
                tp=sum(p == g == k for p, g in zip(pred, gold, strict=True)),
                n_pred=pred.count(k),
                n_gold=gold.count(k),
            )
            for k in LETTERS
        }
    return out


def position_bias(records: list[dict], headline: str) -> dict:
    """Accuracy by gold position, over every record (all rotations or gold-swap variants), per task.

    Per task: n and accuracy for each gold letter; `rstd`, the standard deviation of those accuracies across
    the letters that occur (the recall standard deviation of Zheng et al., ICLR 2024; 0 = no position bias);
    `chi2_p`, the p-value of a chi-squared test that being right does not depend on the gold letter (None when
    fewer than two letters occur or every answer is right, or every one wrong). Overall `rstd` is the unweighted
    mean over tasks. Without --circular (or gold-swap) the letters hold different instances, so a difference
    mixes position with item difficulty.
    """
    by: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by[r["task"]].append(r)
    tasks, rstds = {}, []
    for abbr in all_tasks():
        if not by.get(abbr):
            continue
        table = [
            [sum(r["pred"][headline] == k for r in by[abbr] if r["gold"] == k), sum(r["gold"] == k for r in by[abbr])]
            for k in LETTERS
        ]
        present = [(k, right, n) for k, (right, n) in zip(LETTERS, table, strict=True) if n]
        accs = [right / n for _, right, n in present]
        counts = np.array([[right, n - right] for _, right, n in present])
        p = None
        if len(present) > 1 and counts[:, 0].sum() and counts[:, 1].sum():
            p = float(chi2_contingency(counts, correction=False).pvalue)
        rstds.append(np.std(accs))
        tasks[abbr] = {
            "by_gold": {k: {"n": n, "accuracy": _r(100 * right / n)} for k, right, n in present},
            "rstd": _r(100 * np.std(accs)),
            "chi2_p": p,
        }
    rstd = _r(100 * np.mean(rstds)) if rstds else None
    return {"tasks": tasks, "rstd": rstd}


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (right in A only, right in B only)."""
    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(a_only, n, 0.5).pvalue)


def _key(r: dict) -> tuple[str, str, int]:
    return (r["task"], r["id"], int(r["rotation"]))


def _index(records: list[dict], headline: str, which: str) -> dict[tuple, dict]:
    out = {}
    for r in records:
        if headline not in r["pred"]:
            raise UserError(f"run {which} has no predictions scored by {headline!r}; have {', '.join(r['pred'])}")
        out[_key(r)] = r
    return out


def _paired(a: np.ndarray, b: np.ndarray, inst: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: the summed difference a - b over its items, and its item count (the bootstrap clusters)."""
    ids, pos = np.unique(np.array(inst), return_inverse=True)
    return np.bincount(pos, weights=a - b, minlength=len(ids)), np.bincount(pos, minlength=len(ids)).astype(float)


def _row(a: np.ndarray, b: np.ndarray) -> dict:
    a_only, b_only = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    return {
        "n": len(a),
        "accuracy_a": _r(100 * a.mean()),
        "accuracy_b": _r(100 * b.mean()),
        "difference": _r(100 * (a.mean() - b.mean())),
        "a_only": a_only,
        "b_only": b_only,
        "mcnemar_p": mcnemar_exact(a_only, b_only),
    }


def compare_runs(
    records_a: list[dict], records_b: list[dict], headline_a: str, headline_b: str, seed: int = 0, n_boot: int = N_BOOT
) -> dict:
    """Paired comparison of two runs on the items both answered, matched by (task, id, rotation).

    Per task and overall: n shared items, each run's accuracy on them, the difference A - B with a 95 % paired
    bootstrap interval (instances resampled, an instance's rotations kept together) and the exact McNemar
    p-value. Overall accuracies and difference are unweighted means over the tasks (each resampled within
    itself); the overall McNemar test pools the items of all tasks. Items one run has and the other lacks are
    counted (`only_a`, `only_b`), not compared.
    """
    ia, ib = _index(records_a, headline_a, "A"), _index(records_b, headline_b, "B")
    shared = sorted(ia.keys() & ib.keys())
    only_a, only_b = len(ia.keys() - ib.keys()), len(ib.keys() - ia.keys())
    if not shared:
        raise UserError(
            f"the two runs share no items (A has {len(ia)}, B has {len(ib)}); compare runs on the same data, "
            "language and tasks"
        )
    differ = [k for k in shared if ia[k]["gold"] != ib[k]["gold"] or ia[k].get("options") != ib[k].get("options")]
    if differ:
        task, iid, rot = differ[0]
        raise UserError(
            f"{len(differ)} items have the same id but different options or gold (first: {task} {iid} rotation "
            f"{rot}); compare runs on the same data and the same position mode"
        )
    by_task: dict[str, list[tuple]] = defaultdict(list)
    for k in shared:
        by_task[k[0]].append(k)
    tasks, boots, pooled_a, pooled_b, means = {}, [], [], [], []
    for abbr, keys in ((a, by_task[a]) for a in all_tasks() if a in by_task):
        a = _correct([ia[k] for k in keys], headline_a)
        b = _correct([ib[k] for k in keys], headline_b)
        diff, count = _paired(a, b, [k[1] for k in keys])
        boot = cluster_bootstrap(diff, count, _task_stream(seed, abbr), n_boot)
        tasks[abbr] = _row(a, b) | {"ci95": _interval(boot)}
        boots.append(boot)
        pooled_a.append(a)
        pooled_b.append(b)
        means.append((a.mean(), b.mean()))
    pooled = _row(np.concatenate(pooled_a), np.concatenate(pooled_b))
    overall = {
        "n": pooled["n"],
        "accuracy_a": _r(100 * np.mean([m[0] for m in means])),
        "accuracy_b": _r(100 * np.mean([m[1] for m in means])),
        "difference": _r(100 * np.mean([m[0] - m[1] for m in means])),
        "ci95": _interval(np.mean(boots, axis=0)),
        "a_only": pooled["a_only"],
        "b_only": pooled["b_only"],
        "mcnemar_p": pooled["mcnemar_p"],
    }
    return {
        "headline_a": headline_a,
        "headline_b": headline_b,
        "n_shared": len(shared),
        "only_a": only_a,
        "only_b": only_b,
        "seed": seed,
        "n_boot": n_boot,
        "tasks": tasks,
        "overall": overall,
    }


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def render_comparison(cmp: dict, label_a: str = "A", label_b: str = "B") -> str:
    """The comparison as a markdown section: one row per task and an overall row."""
    lines = [
        f"## {label_a} vs {label_b}",
        "",
        f"{cmp['n_shared']} shared items (matched by task, id and rotation); {label_a} scored by "
        f"{cmp['headline_a']}, {label_b} by {cmp['headline_b']}. Difference = {label_a} - {label_b} in accuracy "
        f"points, with a 95 % paired bootstrap interval ({cmp['n_boot']} resamples of instances, seed {cmp['seed']}) "
        "and the exact McNemar p-value. Overall = unweighted mean over tasks; its McNemar test pools all items.",
        "",
        f"| task | n | {label_a} | {label_b} | difference | 95 % CI | right in {label_a} only | "
        f"right in {label_b} only | McNemar p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in [*cmp["tasks"].items(), ("overall", cmp["overall"])]:
        lo, hi = row["ci95"]
        lines.append(
            f"| {name} | {row['n']} | {row['accuracy_a']:.2f} | {row['accuracy_b']:.2f} | {row['difference']:+.2f} "
            f"| [{lo:+.2f}, {hi:+.2f}] | {row['a_only']} | {row['b_only']} | {_p(row['mcnemar_p'])} |"
        )
    if cmp["only_a"] or cmp["only_b"]:
        lines += [
            "",
            f"Not compared: {cmp['only_a']} items only {label_a} has, {cmp['only_b']} items only {label_b} has.",
        ]
    return "\n".join(lines) + "\n"


def load_records(run_dir: Path) -> tuple[list[dict], str]:
    """The per-item records of an evaluation run folder and the predictor behind its headline accuracy."""
    from distillkit.dialogbench.itemlog import ItemLog
    from distillkit.runs import read_json

    run_dir = Path(run_dir)
    if not (run_dir / "items.jsonl").is_file() or not (run_dir / "metrics.json").is_file():
        raise UserError(f"{run_dir} has no items.jsonl and metrics.json; give a folder written by `dialogbench eval`")
    log = ItemLog(run_dir / "items.jsonl")
    log.close()
    return list(log.records.values()), read_json(run_dir / "metrics.json")["headline"]


def compare_run_dirs(run_a: Path, run_b: Path, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """`compare_runs` on two evaluation run folders, each scored by its own headline predictor."""
    records_a, headline_a = load_records(run_a)
    records_b, headline_b = load_records(run_b)
    return compare_runs(records_a, records_b, headline_a, headline_b, seed=seed, n_boot=n_boot)
