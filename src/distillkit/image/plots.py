"""Pictures: image grids per class and accuracy plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def image_grid(images01: torch.Tensor, labels: torch.Tensor, classes: list[str], path: Path,
               max_per_class: int = 10) -> Path:
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
    bars = ax.bar(names, means, yerr=stds, capsize=4, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52"][:len(names)])
    for b, m in zip(bars, means, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0, min(means) - 20), 100)
    ax.set_title(title, fontsize=10)
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
