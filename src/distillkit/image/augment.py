"""Differentiable siamese augmentation (DSA), seeded by a dedicated torch.Generator.

Strategy `color_crop_cutout_flip_scale_rotate` in mode "S": one family is drawn per call (per
mini-batch) and its parameters are drawn per image; with `siamese=True` one parameter set is drawn per
batch, so two DSA objects whose generators share a seed transform two batches (e.g. real and synthetic
images of a class, as distribution matching needs) identically whatever their sizes.
Written in plain torch because the library alternatives clamp colours to [0, 1] (wrong for
normalised or ZCA-whitened inputs) and draw from the global RNG, which would break the
one-seed-per-stream reproducibility the toolkit promises.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"  # every family: the default of every image method


class DSA:
    """Callable augmentation: `DSA(generator=g)(x)` returns an augmented copy of the batch x (N, C, H, W)."""

    def __init__(
        self,
        strategy: str = DSA_STRATEGY,
        generator: torch.Generator | None = None,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        crop_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        scale_ratio: float = 1.2,
        rotate_degrees: float = 15.0,
        siamese: bool = False,
    ) -> None:
        self.families = [f for f in strategy.split("_") if f]
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown DSA families {sorted(unknown)}; choose from {FAMILIES}")
        self.g = generator or torch.Generator().manual_seed(0)
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast
        self.crop_ratio, self.cutout_ratio = crop_ratio, cutout_ratio
        self.scale_ratio, self.rotate_degrees = scale_ratio, rotate_degrees
        self.siamese = siamese

    def _rand(self, n: int, device: torch.device) -> torch.Tensor:
        if self.siamese:
            return torch.rand(1, generator=self.g).expand(n).to(device)
        return torch.rand(n, generator=self.g).to(device)

    def _randint(self, low: int, high: int, n: int, device: torch.device) -> torch.Tensor:
        if self.siamese:
            return torch.randint(low, high, (1,), generator=self.g).expand(n).to(device)
        return torch.randint(low, high, (n,), generator=self.g).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.families:
            return x
        family = self.families[int(torch.randint(len(self.families), (1,), generator=self.g))]
        return getattr(self, family)(x)

    def color(self, x: torch.Tensor) -> torch.Tensor:
        n, dev = len(x), x.device
        x = x + ((self._rand(n, dev) - 0.5) * self.brightness).view(n, 1, 1, 1)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (self._rand(n, dev) * self.saturation).view(n, 1, 1, 1) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (self._rand(n, dev) + self.contrast).view(n, 1, 1, 1) + mean

    def _warp(self, x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Integer translation by up to round(ratio * size) pixels, zero border."""
        n, _, h, w = x.shape
        sh, sw = round(h * self.crop_ratio), round(w * self.crop_ratio)
        dy = self._randint(-sh, sh + 1, n, x.device)
        dx = self._randint(-sw, sw + 1, n, x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1) - dy.view(n, 1, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w) - dx.view(n, 1, 1)
        valid = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        idx = (rows * w + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
        out = x.flatten(2).gather(2, idx).view_as(x)
        return out * valid

    def cutout(self, x: torch.Tensor) -> torch.Tensor:
        """Zero a square of side round(ratio * size) at a random centre."""
        n, _, h, w = x.shape
        ch, cw = round(h * self.cutout_ratio), round(w * self.cutout_ratio)
        cy = self._randint(0, h + (1 - ch % 2), n, x.device)
        cx = self._randint(0, w + (1 - cw % 2), n, x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = (
            (rows >= (cy - ch // 2).view(n, 1, 1))
            & (rows < (cy - ch // 2 + ch).view(n, 1, 1))
            & (cols >= (cx - cw // 2).view(n, 1, 1))
            & (cols < (cx - cw // 2 + cw).view(n, 1, 1))
        )
        return x * (~inside).unsqueeze(1)

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        mask = (self._rand(len(x), x.device) < 0.5).view(-1, 1, 1, 1)
        return torch.where(mask, x.flip(3), x)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        lo = 1.0 / self.scale_ratio
        sx = self._rand(n, x.device) * (self.scale_ratio - lo) + lo
        sy = self._rand(n, x.device) * (self.scale_ratio - lo) + lo
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 1, 1] = sx, sy
        return self._warp(x, theta)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        angle = (self._rand(n, x.device) - 0.5) * 2 * self.rotate_degrees * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        return self._warp(x, theta)
