"""Preparing image tensors: seeded class-stratified splits, resizing or padding, ZCA whitening, and pixels back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillkit.errors import UserError


def to_pixels(x: torch.Tensor, mean_std: tuple[list[float], list[float]] | None) -> torch.Tensor:
    """Normalised images back to [0, 1] pixels; without `mean_std` (e.g. ZCA images) each image is rescaled
    to its own range, for display."""
    if mean_std is None:
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo + 1e-8)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in mean_std)
    return (x * std + mean).clamp(0, 1)


def stratified_split(y: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with `val_size` validation examples spread evenly over classes, seeded."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per_class = max(1, val_size // len(classes))
    train_idx, val_idx = [], []
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(per_class, len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Images at size x size: zero-padded around the centre (mode "pad", when they fit), else resized bilinearly."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if mode == "pad" and h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Images with `channels` channels: unchanged if they have them, a grey channel repeated otherwise."""
    if channels == x.shape[1]:
        return x
    if x.shape[1] != 1:
        raise UserError(f"cannot turn {x.shape[1]}-channel images into {channels} channels; use channels=1 or 3")
    return x.repeat(1, channels, 1, 1)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (at least 1e-6) of images (N, C, H, W)."""
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()


def standardise(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(x - mean) / std per channel."""
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def fit_zca(x: torch.Tensor, eps: float = 0.1) -> dict[str, torch.Tensor]:
    """ZCA whitening fitted on flattened images: W = U (L + eps)^-1/2 U^T of the unbiased covariance."""
    flat = x.reshape(len(x), -1).double()
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / (len(x) - 1)
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag((evals.clamp_min(0) + eps).rsqrt()) @ evecs.T
    return {"zca_mean": mean.float(), "zca_matrix": w.float()}


def apply_zca(x: torch.Tensor, zca: dict[str, torch.Tensor]) -> torch.Tensor:
    """Whiten images with parameters from `fit_zca`."""
    flat = x.reshape(len(x), -1) - zca["zca_mean"]
    return (flat @ zca["zca_matrix"]).reshape(x.shape)
