"""The one loop that trains a network on (images, targets): teachers, proxy students and evaluation nets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from distillkit.image.augment import DSA
from distillkit.image.losses import label_loss
from distillkit.progress import progress


def sgd(net: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_net(
    net: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    loss: str = "ce",
    batch_size: int = 256,
    decay_after: int | None = None,
    dsa: DSA | None = None,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    desc: str | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> nn.Module:
    """SGD (momentum 0.9, wd 5e-4 unless given), shuffled batches, lr x0.1 after `decay_after` epochs, DSA on inputs.

    `on_epoch(e, net)` runs after each epoch e = 1..epochs (checkpointing, validation).
    `x` and `targets` may stay on the CPU: batches are moved to the network's device.
    """
    device = next(net.parameters()).device
    g = generator or torch.Generator().manual_seed(0)
    opt = sgd(net, lr, momentum, weight_decay)
    decay_after = epochs // 2 if decay_after is None else decay_after
    net.train()
    for epoch in progress(range(1, epochs + 1), desc=desc, leave=False, disable=desc is None):
        if epoch == decay_after + 1:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb, tb = x[idx].to(device, non_blocking=True), targets[idx].to(device, non_blocking=True)
            if dsa is not None:
                xb = dsa(xb)
            opt.zero_grad(set_to_none=True)
            label_loss(loss, net(xb), tb).backward()
            opt.step()
        if on_epoch is not None:
            on_epoch(epoch, net)
    return net


@torch.no_grad()
def predict(
    net: nn.Module, x: torch.Tensor, batch_size: int = 1000, fn: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """Logits of `net` on x (or `fn`'s output, e.g. `net.embed`), in evaluation mode, no augmentation, on the CPU."""
    device = next(net.parameters()).device
    fn = fn or net
    was_training = net.training
    net.eval()
    out = torch.cat([fn(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    net.train(was_training)
    return out


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(net, x).argmax(1) == y).float().mean() * 100)


def frozen(net: nn.Module) -> nn.Module:
    """Evaluation mode with gradients off for every parameter (gradients then flow only to the inputs)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
