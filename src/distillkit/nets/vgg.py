"""VGG-11 for small images (instance- or batch-norm after every conv)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillkit.nets.layers import norm2d

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11Net(nn.Module):
    def __init__(
        self, channels: int, num_classes: int, image_size: int, norm: str = "instance", width: int = 64
    ) -> None:
        """`width` is the first stage's channels (64 in VGG-11); later stages scale with it."""
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = channels, image_size
        for v in VGG11:
            if v == "M":
                # keep maps at least 2x2: instance norm of a 1x1 map is 0, which would kill every later layer
                # (28x28 inputs would otherwise reach 1x1 before the last stage)
                if size >= 4:
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
                continue
            c_out = v * width // 64
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), norm2d(norm, c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
