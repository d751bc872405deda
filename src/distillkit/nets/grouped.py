"""R ConvNets as one network: the layers of R networks of one architecture stacked along the channels.

A convolution of R networks is one convolution with groups=R over channel-stacked inputs; a norm that acts per
channel (instance norm as GroupNorm, batch norm) and the pools act on each network's channels alone; the linear
heads are one batched matrix product. Each network's outputs depend on its own weights and inputs only, so the
gradient of a sum of per-network losses is, for each network, the gradient of its own loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distillkit.nets.convnet import ConvNet

# Layers that act on each channel alone: one module serves all R networks unchanged.
CHANNELWISE = (nn.ReLU, nn.AvgPool2d, nn.MaxPool2d, nn.Identity)


class PairAveragePool(nn.Module):
    """2x2 average pooling with stride 2 (`nn.AvgPool2d(2, 2)`, an odd last row or column dropped) as two matrix
    products with a fixed matrix of halves: the same numbers up to rounding, about 2.5x faster on a CPU than
    avg_pool2d, whose forward and backward dominate the non-convolution time of a ConvNet step there."""

    def __init__(self) -> None:
        super().__init__()
        self.halves: dict[tuple, torch.Tensor] = {}

    def pairing(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """(size // 2, size): row i averages entries 2i and 2i + 1."""
        key = (size, like.dtype, like.device)
        if key not in self.halves:
            m = torch.zeros(size // 2, size, dtype=like.dtype, device=like.device)
            rows = torch.arange(size // 2, device=like.device)
            m[rows, 2 * rows] = m[rows, 2 * rows + 1] = 0.5
            self.halves[key] = m
        return self.halves[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.pairing(h, x) @ (x @ self.pairing(w, x).T)


def _stack_conv(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    c, r = convs[0], len(convs)
    return nn.Conv2d(
        r * c.in_channels,
        r * c.out_channels,
        c.kernel_size,
        c.stride,
        c.padding,
        c.dilation,
        groups=r * c.groups,
        bias=c.bias is not None,
        padding_mode=c.padding_mode,
    )


def _stack_norm(norms: Sequence[nn.Module]) -> nn.Module:
    n, r = norms[0], len(norms)
    if isinstance(n, nn.GroupNorm):
        return nn.GroupNorm(r * n.num_groups, r * n.num_channels, n.eps, n.affine)
    return nn.BatchNorm2d(r * n.num_features, n.eps, n.momentum, n.affine, n.track_running_stats)


def _is_pair_average(layer: nn.Module) -> bool:
    return isinstance(layer, nn.AvgPool2d) and (layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode) == (
        2,
        2,
        0,
        False,
    )


def _stack_layer(layers: Sequence[nn.Module]) -> nn.Module:
    first = layers[0]
    if isinstance(first, nn.Conv2d):
        stacked = _stack_conv(layers)
    elif isinstance(first, (nn.GroupNorm, nn.BatchNorm2d)):
        stacked = _stack_norm(layers)
    elif _is_pair_average(first):
        return PairAveragePool()
    elif isinstance(first, CHANNELWISE):
        return first
    else:
        raise ValueError(f"a {type(first).__name__} layer cannot be stacked")
    copy_state(layers, stacked, into_stack=True)
    return stacked


def _tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    return dict(layer.named_parameters()) | dict(layer.named_buffers())


@torch.no_grad()
def copy_state(layers: Sequence[nn.Module], stacked: nn.Module, into_stack: bool) -> None:
    """Copy parameters and buffers of R layers into their stacked layer (or back, `into_stack=False`).

    Every tensor is the R layers' tensors concatenated along dim 0; a step counter (num_batches_tracked) is shared.
    """
    own = [_tensors(m) for m in layers]
    for name, whole in _tensors(stacked).items():
        parts = [t[name] for t in own]
        if into_stack:
            whole.copy_(parts[0] if whole.dim() == 0 else torch.cat(parts))
            continue
        pieces = [whole] * len(parts) if whole.dim() == 0 else whole.chunk(len(parts))
        for part, piece in zip(parts, pieces, strict=True):
            part.copy_(piece)


class StackedLinear(nn.Module):
    """R linear layers as one batched product: (R, B, F) -> (R, B, K)."""

    def __init__(self, heads: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]).clone())
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    @torch.no_grad()
    def write_back(self, heads: Sequence[nn.Linear]) -> None:
        for h, w, b in zip(heads, self.weight, self.bias, strict=True):
            h.weight.copy_(w)
            h.bias.copy_(b)


def groupable(net: nn.Module) -> bool:
    """Whether `net` can join a `GroupedConvNet`: a ConvNet made of convolutions, channel-wise norms and pools."""
    return isinstance(net, ConvNet) and all(
        isinstance(m, (nn.Conv2d, nn.GroupNorm, nn.BatchNorm2d, *CHANNELWISE)) for m in net.features
    )


class GroupedConvNet(nn.Module):
    """R ConvNets of one shape, trained as one: `forward` maps (R, B, C, H, W) to (R, B, num_classes).

    Built from R networks (their weights copied in); `write_back` copies the trained weights back into them.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if not nets or not all(groupable(n) for n in nets):
            raise ValueError("GroupedConvNet takes one or more ConvNets")
        self.size = len(nets)
        self.features = nn.Sequential(
            *[_stack_layer(layers) for layers in zip(*[n.features for n in nets], strict=True)]
        )
        self.classifier = StackedLinear([n.classifier for n in nets])
        self.to(nets[0].classifier.weight)  # their device and dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, b = x.shape[:2]
        h = self.features(x.transpose(0, 1).reshape(b, r * x.shape[2], *x.shape[3:]))
        return self.classifier(h.reshape(b, r, -1).transpose(0, 1))

    def write_back(self, nets: Sequence[nn.Module]) -> None:
        """Copy every network's parameters and buffers (batch-norm statistics) back into `nets`."""
        for stacked, *layers in zip(self.features, *[n.features for n in nets], strict=True):
            if not isinstance(stacked, (*CHANNELWISE, PairAveragePool)):
                copy_state(layers, stacked, into_stack=False)
        self.classifier.write_back([n.classifier for n in nets])
