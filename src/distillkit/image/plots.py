"""Pictures: image grids per class and accuracy plots."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def image_grid(
    images01: torch.Tensor, labels: torch.Tensor, classes: list[str], path: Path, max_per_class: int = 10
) -> Path:
    """One row per class, up to `max_per_class` images each; `images01` in [0, 1]."""
    n_cls = len(classes)
    cols = min(max_per_class, max(int((labels == c).sum()) for c in range(n_cls)))
    fig, axes = plt.subplots(n_cls, cols, figsize=(cols * 0.9 + 1.2, n_cls * 0.9), squeeze=False)
    for c in range(n_cls):
        idx = torch.nonzero(labels == c).flatten()[:cols]
        for j in range(cols):
            ax = axes[c][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(idx):
                img = images01[idx[j]].permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(classes[c], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def accuracy_bars(results: dict[str, dict], path: Path, title: str) -> Path:
    """Bar chart of mean +- std test accuracy per method."""
    names = list(results)
    means = [results[n]["mean"] for n in names]
    stds = [results[n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 1.5, 3.2))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52"][: len(names)])
    for b, m in zip(bars, means, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0, min(means) - 20), 100)
    ax.set_title(textwrap.fill(title, 80), fontsize=10)  # long protocol names wrap instead of running off
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def curve(xs: list[float], ys: list[float], path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def accuracy_lines(
    rows: list[dict], path: Path, title: str, x: str = "ipc", xlabel: str = "images per class", log_x: bool = True
) -> Path:
    """Test accuracy against `x` (IPC by default), one line per method, one panel per label mode (bars = std)."""
    labels = sorted({r["labels"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r[x], r["mean"], r["std"]) for r in rows if r["method"] == method and r["labels"] == label)
            if pts:
                xs, ys, es = zip(*pts, strict=True)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{label} labels", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _grouped(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def cost_bars(costs: dict[str, dict], path: Path, title: str) -> Path:
    """Peak memory and seconds of building each set; `costs` is keyed '<method>_ipc<k>'."""
    methods = list(dict.fromkeys(k.rsplit("_ipc", 1)[0] for k in costs))
    ipcs = sorted({int(k.rsplit("_ipc", 1)[1]) for k in costs})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, field, ylabel in ((axes[0], "peak_mb", "peak memory (MB)"), (axes[1], "seconds", "build time (s)")):
        series = {f"IPC {k}": [costs.get(f"{m}_ipc{k}", {}).get(field, 0.0) for m in methods] for k in ipcs}
        _grouped(ax, methods, series, ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def cross_arch_bars(rows: list[dict], path: Path, title: str) -> Path:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
