"""Accuracy against DPC for DiLM and the baselines (mean ± std bars), full data as a dashed line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillkit.plots import accuracy_vs_size

LABELS = {
    "dilm": "DiLM",
    "vanilla_lm": "vanilla LM",
    "kmeans_medoid": "K-means medoid (K-centers)",
    "greedy_k_center": "greedy k-center",
    "herding": "herding",
    "random": "random",
    "full": "full data",
}


def dpc_rows(per_method: dict[str, dict]) -> tuple[list[dict], dict[str, float]]:
    """One learner's results (method -> DPC -> mean/std) as plot rows, and the full-data reference."""
    rows, references = [], {}
    for method, per in per_method.items():
        if method == "full":
            references[LABELS["full"]] = per["all"]["mean"]
            continue
        name = LABELS.get(method, method)
        rows += [{"method": name, "dpc": int(d), "mean": r["mean"], "std": r["std"]} for d, r in per.items()]
    return rows, references


def plot_accuracy_vs_dpc(metrics: dict[str, Any], path: Path, learner: str | None = None) -> Path:
    """accuracy_vs_dpc.png of a DiLM run: one line per method for `learner` (the first one by default)."""
    learners = metrics["learners"]
    learner = learner or next(iter(learners))
    rows, references = dpc_rows(learners[learner])
    return accuracy_vs_size(
        rows,
        path,
        f"{metrics.get('dataset', '')}, learner {learner}",
        size="dpc",
        xlabel="data per class (DPC)",
        log_x=False,
        panel=None,
        references=references,
        ylabel=f"test {metrics.get('metric', 'accuracy')} (%)",
        panel_size=(6, 4),
    )
