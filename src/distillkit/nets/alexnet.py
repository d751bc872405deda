"""AlexNet for small images (the DC variant: five convs, three max-pools, one linear head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        pad = 4 if channels == 1 else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 5, 1, pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(128, 192, 5, 1, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(192, 256, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2, ceil_mode=True),
        )
        self.classifier = nn.Linear(192 * 4 * 4, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
