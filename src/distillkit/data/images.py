"""Image datasets behind one registry, each with seeded train / validation / test splits.

`load_images` reads a registered dataset (`image_sources`), turns it into normalised float tensors, holds out
a class-stratified validation split from train, and applies the resize / pad / channel / ZCA options
(`image_prep`). `ImageData` is what every image method trains on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from distillkit.data.image_prep import (
    apply_zca,
    channel_stats,
    fit_zca,
    resize,
    standardise,
    stratified_split,
    to_channels,
    to_pixels,
)
from distillkit.data.image_sources import DATASETS, KNOWN_STATS, canonical_name
from distillkit.errors import UserError


@dataclass
class ImageData:
    """A dataset ready for training: normalised float tensors and the metadata to undo it."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]
    zca: dict[str, torch.Tensor] | None = None
    options: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def digest(self) -> str:
        """A content hash of every split as prepared (pixels and labels): a run records what it was given."""
        import hashlib

        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def class_indices(self, c: int) -> torch.Tensor:
        return torch.nonzero(self.y_train == c).flatten()

    def check_ipc(self, *ipcs: int) -> None:
        """Refuse an images-per-class count the smallest class cannot fill (before any training starts)."""
        smallest = min(len(self.class_indices(c)) for c in range(self.num_classes))
        too_big = [k for k in ipcs if k > smallest or k < 1]
        if too_big:
            raise UserError(
                f"IPC {too_big[0]} does not fit: the smallest class has {smallest} training images; "
                "choose a smaller --ipc"
            )

    def validation_view(self) -> ImageData:
        """The same data with the validation split in the test slot: what every choice of settings is scored on."""
        return replace(self, x_test=self.x_val, y_test=self.y_val, options={**self.options, "scored_on": "validation"})

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images back to [0, 1] pixels (ZCA images are rescaled per image for display)."""
        return to_pixels(x, None if self.zca is not None else (self.mean, self.std))


def load_images(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    val_size: int | None = None,
    size: int | None = None,
    resize_mode: str = "pad",
    channels: int | None = None,
    normalize: bool = True,
    zca: bool = False,
    zca_eps: float = 0.1,
    train_limit: int | None = None,
    download: bool = False,
) -> ImageData:
    """Load a registered dataset with seeded train/val/test splits.

    `size` pads (or resizes) to size x size; `channels=3` repeats a grey channel; `zca` whitens with
    statistics of the training split (pixels in [0, 1], no mean/std step, as in the APM spec);
    `train_limit` keeps a seeded class-balanced subset of the training split (for quick runs).
    """
    key = canonical_name(name)
    raw = DATASETS[key](Path(root) if root else None, download=download)
    x, y, xt, yt = raw.pixels()
    if size:
        x, xt = resize(x, size, resize_mode), resize(xt, size, resize_mode)
    if channels:
        x, xt = to_channels(x, channels), to_channels(xt, channels)
    if val_size is None:
        val_size = min(5000, len(y) // 10)
    tr, va = stratified_split(y, val_size, seed)
    x_val, y_val, x, y = x[va], y[va], x[tr], y[tr]
    if train_limit and train_limit < len(y):
        _, keep = stratified_split(y, train_limit, seed + 1)
        x, y = x[keep], y[keep]
    mean, std = KNOWN_STATS[key] if key in KNOWN_STATS and x.shape[1] == 3 else channel_stats(x)
    zca_params = None
    if zca:
        zca_params = fit_zca(x, zca_eps)
        x, x_val, xt = (apply_zca(t, zca_params) for t in (x, x_val, xt))
    elif normalize:
        x, x_val, xt = (standardise(t, mean, std) for t in (x, x_val, xt))
    if zca or not normalize:
        mean, std = [0.0] * x.shape[1], [1.0] * x.shape[1]
    options = {
        "seed": seed,
        "val_size": val_size,
        "size": size,
        "resize_mode": resize_mode,
        "channels": channels,
        "normalize": normalize,
        "zca": zca,
        "zca_eps": zca_eps,
        "train_limit": train_limit,
    }
    return ImageData(
        key,
        x.contiguous(),
        y,
        x_val.contiguous(),
        y_val,
        xt.contiguous(),
        yt,
        raw.classes,
        [float(v) for v in mean],
        [float(v) for v in std],
        zca_params,
        options,
    )
