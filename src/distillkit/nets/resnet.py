"""ResNet-18 for small images (3x3 stem, no max-pool), with batch- or instance-norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillkit.nets.layers import norm2d


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = norm2d(norm, c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm2d(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(
        self, channels: int, num_classes: int, image_size: int, norm: str = "instance", width: int = 64
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
        self.bn1 = norm2d(norm, width)
        stages, c_in, size = [], width, image_size
        for i, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 2 if i > 0 and size >= 4 else 1  # keep maps at least 2x2 (instance norm of 1x1 is 0)
            size = (size + 1) // 2 if stride == 2 else size
            stages += [BasicBlock(c_in, c_out, stride, norm), BasicBlock(c_out, c_out, 1, norm)]
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.classifier = nn.Linear(c_in, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
