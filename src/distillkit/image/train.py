"""The one loop that trains a network on (images, targets): teachers, proxy students and evaluation nets."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from distillkit.image.augment import DSA
from distillkit.image.losses import label_loss
from distillkit.progress import progress

# Training data up to this size is copied to the network's device once per call rather than once per batch.
DEVICE_DATA_LIMIT_BYTES = 4 * 2**30


def resident(t: torch.Tensor, device: torch.device, limit_bytes: int = DEVICE_DATA_LIMIT_BYTES) -> torch.Tensor:
    """`t` on `device` when it fits under `limit_bytes` (else left where it is, to be moved batch by batch)."""
    if t.device == device or t.numel() * t.element_size() > limit_bytes:
        return t
    return t.to(device)


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
    on_epoch: Callable[[int, nn.Module], str | None] | None = None,
    desc: str | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> nn.Module:
    """SGD (momentum 0.9, wd 5e-4 unless given), shuffled batches, lr x0.1 after `decay_after` epochs, DSA on inputs.

    `on_epoch(e, net)` runs after each epoch e = 1..epochs (checkpointing, validation); it may return "decay"
    (lr x0.1 from the next epoch on) or "stop" (end training now): that is how `UntilConverged` drives it.
    `x` and `targets` may stay on the CPU: up to `DEVICE_DATA_LIMIT_BYTES` they are copied to the network's device
    once, larger ones batch by batch. Batch order comes from a CPU generator, so a seed gives the same batches
    on every device.
    """
    device = next(net.parameters()).device
    x, targets = resident(x, device), resident(targets, device)
    g = generator or torch.Generator().manual_seed(0)
    opt = sgd(net, lr, momentum, weight_decay)
    decay_after = epochs // 2 if decay_after is None else decay_after
    net.train()
    for epoch in progress(range(1, epochs + 1), desc=desc, leave=False, disable=desc is None):
        if epoch == decay_after + 1:
            decay_lr(opt, lr)
        order = torch.randperm(len(x), generator=g).to(x.device)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb, tb = x[idx].to(device, non_blocking=True), targets[idx.to(targets.device)].to(device, non_blocking=True)
            if dsa is not None:
                xb = dsa(xb)
            opt.zero_grad(set_to_none=True)
            label_loss(loss, net(xb), tb).backward()
            opt.step()
        signal = on_epoch(epoch, net) if on_epoch is not None else None
        if signal == "decay":
            decay_lr(opt, lr)
        elif signal == "stop":
            break
    return net


def decay_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to a tenth of `lr`."""
    for group in opt.param_groups:
        group["lr"] = lr * 0.1


class UntilConverged:
    """Train until validation accuracy stops improving: the `on_epoch` of `train_net` for teachers and references.

    After each epoch it scores the validation split. Once accuracy has not improved for `patience` epochs,
    the learning rate drops x0.1; once it stalls again for `patience` epochs, training stops. The weights of
    the best validation epoch are kept (`restore`). A run that reaches the epoch cap before stopping is
    reported as not converged. The test split is never looked at.
    """

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, patience: int, min_delta: float = 0.05) -> None:
        self.x_val, self.y_val, self.patience, self.min_delta = x_val, y_val, patience, min_delta
        self.best_acc, self.best_epoch, self.best_state = -1.0, 0, None
        self.stalled, self.decayed, self.converged = 0, False, False
        self.curve: list[float] = []  # validation accuracy after each epoch run

    def __call__(self, epoch: int, net: nn.Module) -> str | None:
        acc = accuracy(net, self.x_val, self.y_val)
        self.curve.append(acc)
        if acc > self.best_acc + self.min_delta:
            self.best_acc, self.best_epoch, self.best_state = acc, epoch, copy.deepcopy(net.state_dict())
            self.stalled = 0
            return None
        self.stalled += 1
        if self.stalled < self.patience:
            return None
        self.stalled = 0
        if not self.decayed:
            self.decayed = True
            return "decay"
        self.converged = True
        return "stop"

    def restore(self, net: nn.Module) -> nn.Module:
        """Load the best validation epoch's weights into `net`."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)
        return net

    def summary(self) -> dict:
        return {
            "best_epoch": self.best_epoch,
            "val_acc": self.best_acc,
            "epochs_run": len(self.curve),
            "converged": self.converged,
            "val_curve": self.curve,
        }


@torch.no_grad()
def predict(
    net: nn.Module, x: torch.Tensor, batch_size: int = 1000, fn: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """Logits of `net` on x (or `fn`'s output, e.g. `net.embed`), in evaluation mode, no augmentation, on the CPU."""
    device = next(net.parameters()).device
    fn = fn or net
    was_training = net.training
    net.eval()
    out = torch.cat([fn(x[i : i + batch_size].to(device)).float() for i in range(0, len(x), batch_size)]).cpu()
    net.train(was_training)
    return out


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(net, x).argmax(1) == y).float().mean() * 100)


def agreement(net: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> float:
    """Percent of x on which the network's top class is the target's (argmax of soft targets, or the class id)."""
    wanted = targets.argmax(1) if targets.dtype.is_floating_point else targets
    return float((predict(net, x).argmax(1) == wanted.cpu()).float().mean() * 100)


def frozen(net: nn.Module) -> nn.Module:
    """Evaluation mode with gradients off for every parameter (gradients then flow only to the inputs)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
