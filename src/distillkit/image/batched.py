"""Train R evaluation networks at once: the batched twin of `train_net` for the evaluator's R runs.

The R networks (each built under its own seed, as the sequential evaluator builds it) are copied into one
`GroupedConvNet`. Every network keeps its own batch order (its own generator) and its own augmentation draws
(its own DSA); the loss is the sum of the R networks' own losses, so each network's gradient is its own; SGD
with momentum and weight decay acts element by element, so one optimizer over the stacked parameters steps each
network exactly as its own optimizer would. Trained weights are copied back into the R networks. The results
equal R calls of `train_net` up to float summation order (the grouped convolutions add in another order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distillkit.image.augment import DSA
from distillkit.image.losses import label_loss
from distillkit.image.train import decay_lr, resident, sgd
from distillkit.nets.grouped import GroupedConvNet, groupable
from distillkit.progress import progress


def can_train_together(nets: Sequence[nn.Module]) -> bool:
    """Whether `train_together` takes these networks: two or more ConvNets of one shape."""
    if len(nets) < 2 or not all(groupable(n) for n in nets):
        return False
    shapes = [[tuple(p.shape) for p in n.parameters()] for n in nets]
    return all(s == shapes[0] for s in shapes)


def train_together(
    nets: Sequence[nn.Module],
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    loss: str,
    batch_size: int,
    decay_after: int,
    dsas: Sequence[DSA | None],
    generators: Sequence[torch.Generator],
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    desc: str | None = None,
) -> list[nn.Module]:
    """Train `nets` on (x, targets) as `train_net` trains each: net i with `dsas[i]` and batch order `generators[i]`.

    Same schedule as `train_net`: SGD (momentum, weight decay), shuffled batches, lr x0.1 after `decay_after`
    epochs. Returns the networks, trained in place.
    """
    group = GroupedConvNet(nets)
    device = group.classifier.weight.device
    x, targets = resident(x, device), resident(targets, device)
    opt = sgd(group, lr, momentum, weight_decay)
    group.train()
    for epoch in progress(range(1, epochs + 1), desc=desc, leave=False, disable=desc is None):
        if epoch == decay_after + 1:
            decay_lr(opt, lr)
        orders = [torch.randperm(len(x), generator=g).to(x.device) for g in generators]
        for start in range(0, len(x), batch_size):
            picks = [order[start : start + batch_size] for order in orders]
            xb = torch.stack([augmented(x[idx].to(device), dsa) for idx, dsa in zip(picks, dsas, strict=True)])
            tbs = [targets[idx.to(targets.device)].to(device) for idx in picks]
            opt.zero_grad(set_to_none=True)
            outputs = group(xb)
            torch.stack([label_loss(loss, out, tb) for out, tb in zip(outputs, tbs, strict=True)]).sum().backward()
            opt.step()
    group.write_back(nets)
    return list(nets)


def augmented(xb: torch.Tensor, dsa: DSA | None) -> torch.Tensor:
    return xb if dsa is None else dsa(xb)
