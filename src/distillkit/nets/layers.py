"""Normalisation and pooling layers shared by the networks."""

from __future__ import annotations

from torch import nn


def norm2d(kind: str, channels: int) -> nn.Module:
    """'instance' (GroupNorm with one group per channel, learnable affine, as in DC/MTT), 'batch' or 'none'."""
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (instance, batch, none)")


def pool2d(kind: str) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(2, 2)
    if kind == "max":
        return nn.MaxPool2d(2, 2)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown pooling '{kind}' (avg, max, none)")
