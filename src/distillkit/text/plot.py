"""Accuracy against DPC for DiLM and the baselines (mean ± std bands), full data as a dashed line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {
    "dilm": "DiLM",
    "vanilla_lm": "vanilla LM",
    "kmeans_medoid": "K-means medoid (K-centers)",
    "greedy_k_center": "greedy k-center",
    "herding": "herding",
    "random": "random",
    "full": "full data",
}


def plot_accuracy_vs_dpc(metrics: dict[str, Any], path: Path, learner: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learners = metrics["learners"]
    learner = learner or next(iter(learners))
    res = learners[learner]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, per in res.items():
        if method == "full":
            ax.axhline(per["all"]["mean"], ls="--", color="k", label=f"{LABELS['full']} ({per['all']['mean']:.1f})")
            continue
        dpcs = sorted(int(d) for d in per)
        mean = [per[str(d)]["mean"] for d in dpcs]
        std = [per[str(d)]["std"] for d in dpcs]
        ax.errorbar(dpcs, mean, yerr=std, marker="o", capsize=3, label=LABELS.get(method, method))
    all_dpcs = sorted({int(d) for per in res.values() for d in per if d != "all"})
    if all_dpcs:
        ax.set_xticks(all_dpcs)
    ax.set_xlabel("data per class (DPC)")
    ax.set_ylabel(f"test {metrics.get('metric', 'accuracy')} (%)")
    ax.set_title(f"{metrics.get('dataset', '')}, learner {learner}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
