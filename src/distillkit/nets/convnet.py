"""ConvNet-D: D blocks of [3x3 conv, norm, ReLU, 2x2 pool], then a linear head (the DC/MTT/APM ConvNet)."""

from __future__ import annotations

import torch
from torch import nn

from distillkit.nets.layers import norm2d, pool2d


class ConvNet(nn.Module):
    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        width: int = 128,
        depth: int = 3,
        norm: str = "instance",
        pooling: str = "avg",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = image_size, channels
        for block in range(depth):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), norm2d(norm, width), nn.ReLU(inplace=True)]
            # the next block must see at least 2x2: instance norm of a 1x1 map is 0 (kills every later layer)
            if pooling != "none" and (size >= 4 or (size >= 2 and block == depth - 1)):
                layers.append(pool2d(pooling))
                size //= 2
            c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
