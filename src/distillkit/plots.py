"""Every picture the toolkit draws (matplotlib, Agg backend): image grids, accuracy bars and curves,
accuracy against the size of the small set (IPC or DPC), cost charts and the DialogBench charts.

Each function takes plain data (lists, dicts, tensors) and a target: a file path, or a binary stream
(e.g. `io.BytesIO`) when the picture goes straight into a report.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Target = Path | str | IO[bytes]

BAR_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]


def _save(fig, target: Target, dpi: int) -> Path | IO[bytes]:
    """Write `fig` as PNG to `target` (a path or a binary stream), close it, and return the target."""
    fig.savefig(target, dpi=dpi, format="png")
    plt.close(fig)
    return target if hasattr(target, "write") else Path(target)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def image_grid(images01, labels, classes: list[str], path: Target, max_per_class: int = 10) -> Path:
    """One row per class, up to `max_per_class` images each; `images01` (N, C, H, W) in [0, 1]."""
    images01, labels = np.asarray(images01), np.asarray(labels)
    n_cls = len(classes)
    cols = min(max_per_class, max(int((labels == c).sum()) for c in range(n_cls)))
    fig, axes = plt.subplots(n_cls, cols, figsize=(cols * 0.9 + 1.2, n_cls * 0.9), squeeze=False)
    for c in range(n_cls):
        idx = np.flatnonzero(labels == c)[:cols]
        for j in range(cols):
            ax = axes[c][j]
            _bare(ax)
            if j < len(idx):
                img = images01[idx[j]].transpose(1, 2, 0)
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    return _save(fig, path, 90)


def accuracy_bars(results: dict[str, dict], path: Target, title: str) -> Path:
    """Bar chart of mean +- std test accuracy per method."""
    names = list(results)
    means = [results[n]["mean"] for n in names]
    stds = [results[n]["std"] for n in names]
    width = 1.6 * len(names) + 1.5
    fig, ax = plt.subplots(figsize=(width, 3.2))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=BAR_COLORS[: len(names)])
    for b, m in zip(bars, means, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0, min(means) - 20), 100)
    ax.set_title(textwrap.fill(title, int(width * 11)), fontsize=10)  # long protocol names wrap to the width
    fig.tight_layout()
    return _save(fig, path, 100)


def curve(xs: list[float], ys: list[float], path: Target, xlabel: str, ylabel: str, title: str) -> Path:
    """One line with markers (a loss or discrepancy curve)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, 100)


def accuracy_vs_size(
    rows: list[dict],
    path: Target,
    title: str,
    size: str = "ipc",
    xlabel: str = "images per class",
    log_x: bool = True,
    panel: str | None = "labels",
    references: dict[str, float] | None = None,
    ylabel: str = "test accuracy (%)",
    panel_size: tuple[float, float] = (4.6, 3.4),
) -> Path:
    """Test accuracy against the size of the small set (IPC for images, DPC for text), one line per method.

    Each row holds "method", the `size` key, "mean" and "std" (drawn as error bars). With `panel` set, rows
    are split into one panel per value of that key (e.g. the label mode); `references` are dashed
    horizontal lines (e.g. the full training set), labelled with their value.
    """
    panels = sorted({r[panel] for r in rows}, reverse=True) if panel else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    sizes = sorted({r[size] for r in rows})
    for ax, value in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if panel is None or r[panel] == value]
        for method in dict.fromkeys(r["method"] for r in mine):
            pts = sorted((r[size], r["mean"], r["std"]) for r in mine if r["method"] == method)
            xs, ys, es = zip(*pts, strict=True)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        for name, y in (references or {}).items():
            ax.axhline(y, ls="--", color="k", label=f"{name} ({y:.1f})")
        if log_x:
            ax.set_xscale("log")
        elif sizes:
            ax.set_xticks(sizes)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{value} labels" if panel else title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if panel:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 100 if panel else 110)


def accuracy_lines(
    rows: list[dict], path: Target, title: str, x: str = "ipc", xlabel: str = "images per class", log_x: bool = True
) -> Path:
    """Test accuracy against `x` (IPC by default), one line per method, one panel per label mode (bars = std)."""
    return accuracy_vs_size(rows, path, title, size=x, xlabel=xlabel, log_x=log_x)


def _grouped(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def cost_bars(costs: dict[str, dict], path: Target, title: str) -> Path:
    """Peak memory and seconds of building each set; `costs` is keyed '<method>_ipc<k>'."""
    methods = list(dict.fromkeys(k.rsplit("_ipc", 1)[0] for k in costs))
    ipcs = sorted({int(k.rsplit("_ipc", 1)[1]) for k in costs})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, field, ylabel in ((axes[0], "peak_mb", "peak memory (MB)"), (axes[1], "seconds", "build time (s)")):
        series = {f"IPC {k}": [costs.get(f"{m}_ipc{k}", {}).get(field, 0.0) for m in methods] for k in ipcs}
        _grouped(ax, methods, series, ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 100)


def cross_arch_bars(rows: list[dict], path: Target, title: str) -> Path:
    """Test accuracy of each method's set on each network, at the largest IPC in `rows`."""
    ipc = max(r["ipc"] for r in rows)
    rows = [r for r in rows if r["ipc"] == ipc]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    series = {
        a: [next((r["mean"] for r in rows if r["method"] == m and r["arch"] == a), 0.0) for m in methods] for a in archs
    }
    fig, ax = plt.subplots(figsize=(1.4 * len(methods) * max(len(archs), 2) / 2 + 2, 3.4))
    _grouped(ax, methods, series, "test accuracy (%)")
    ax.set_title(f"{title}, IPC {ipc}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, 100)


def task_bars(tasks: list[str], series: dict[str, list[float]], path: Target, title: str, chance: float = 25) -> Path:
    """Accuracy per task, one bar per run (`series`: run name -> accuracy per task), chance as a dashed line."""
    x = np.arange(len(tasks))
    w = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(11, 4))
    for i, (name, vals) in enumerate(series.items()):
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, label=name)
    ax.axhline(chance, color="gray", ls="--", lw=1, label="chance (4 options)")
    ax.set_xticks(x, tasks)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, 110)


def task_radar(tasks: list[str], series: dict[str, list[float]], path: Target) -> Path:
    """The same accuracies on a radar chart, one filled outline per run."""
    ang = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False).tolist()
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="polar")
    for name, vals in series.items():
        ax.plot(ang + ang[:1], vals + vals[:1], label=name)
        ax.fill(ang + ang[:1], vals + vals[:1], alpha=0.1)
    ax.set_xticks(ang, tasks)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.25, -0.1))
    fig.tight_layout()
    return _save(fig, path, 110)


def letter_bars(gold: dict[str, int], predicted: dict[str, dict[str, int]], path: Target) -> Path:
    """Share of each answer letter: the gold answers in gray, then each run's predictions (position bias)."""
    letters = ["A", "B", "C", "D", "none"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = 0.8 / (len(predicted) + 1)
    xl = np.arange(len(letters))
    tot = max(sum(gold.values()), 1)
    ax.bar(xl - 0.4 + w / 2, [100 * gold.get(k, 0) / tot for k in letters], w, label="gold", color="gray")
    for i, (name, p) in enumerate(predicted.items(), 1):
        n = max(sum(p.values()), 1)
        ax.bar(xl - 0.4 + w / 2 + i * w, [100 * p.get(k, 0) / n for k in letters], w, label=name)
    ax.set_xticks(xl, letters)
    ax.set_ylabel("% of answers")
    ax.set_title("Predicted letters vs gold (position bias)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, 110)


def count_panels(panels: dict[str, dict[str, int]], path: Target) -> Path:
    """One bar chart of counts per panel, side by side (e.g. a dataset's items per task, domain, answer)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels.items(), strict=True):
        ax.bar(range(len(counts)), list(counts.values()), color="#4c72b0")
        ax.set_xticks(range(len(counts)), list(counts), rotation=60 if len(counts) > 4 else 0, ha="right", fontsize=7)
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path, 100)
