"""Image networks behind one registry: `build_net(name, channels, num_classes, image_size, **options)`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from distillkit.errors import UserError
from distillkit.nets.alexnet import AlexNet
from distillkit.nets.convnet import ConvNet
from distillkit.nets.mlp import MLP
from distillkit.nets.resnet import ResNet18
from distillkit.nets.vgg import VGG11Net
from distillkit.nets.vit import ViT

NETS: dict[str, Callable[..., nn.Module]] = {
    "convnet": ConvNet,
    "convnetd3": partial(ConvNet, depth=3),
    "convnetd4": partial(ConvNet, depth=4),
    "convnetbn": partial(ConvNet, norm="batch"),
    "convnetnonorm": partial(ConvNet, norm="none"),
    "resnet18": ResNet18,
    "resnet18bn": partial(ResNet18, norm="batch"),
    "vgg11": VGG11Net,
    "vgg11bn": partial(VGG11Net, norm="batch"),
    "alexnet": AlexNet,
    "vit": ViT,
    "mlp": MLP,
}


def canonical_arch(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETS:
        raise UserError(f"unknown architecture '{name}'; choose one of: {', '.join(NETS)}")
    return key


def build_net(name: str, channels: int, num_classes: int, image_size: int, **options) -> nn.Module:
    """Build a registered network; `options` (width, depth, norm, pooling, ...) go to its constructor."""
    try:
        return NETS[canonical_arch(name)](channels=channels, num_classes=num_classes, image_size=image_size, **options)
    except TypeError as e:
        raise UserError(f"architecture '{name}' does not take these options {sorted(options)}: {e}") from None
