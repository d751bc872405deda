"""The evaluation protocol: train R fresh networks on a small set, report test accuracy mean +- std.

The same protocol scores a distilled set, a random real subset of the same IPC and the full training
set, so every table compares like with like. No model selection happens here: each run reports the
accuracy of its last epoch on the test split, so the test split is never used to choose anything.
"""

from __future__ import annotations

import statistics
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA
from distillkit.image.seeding import generator, seeded
from distillkit.image.train import accuracy, train_net
from distillkit.nets import build_net, canonical_arch
from distillkit.progress import progress


class EvalConfig(BaseModel):
    """The evaluation schedule (spec: SGD 0.9 / 5e-4, batch 256, lr x0.1 after half, DSA, 5 runs)."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "convnet"
    net_options: dict = Field(default_factory=dict)
    runs: int = Field(5, ge=1)
    epochs: int = Field(1000, ge=1)
    lr: float = 0.02
    batch_size: int = 256
    label_mode: Literal["soft", "hard"] = "soft"
    loss: Literal["l1", "kl", "mse", "soft_ce", "ce"] = "l1"
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    seed: int = 0

    def describe(self) -> str:
        labels = "teacher soft labels" if self.label_mode == "soft" else "hard labels"
        aug = "DSA" if self.dsa else "no augmentation"
        return f"{canonical_arch(self.arch)}, {labels}, {self.loss} loss, {self.epochs} epochs, {aug}, {self.runs} runs"


def summarise(accs: list[float]) -> dict:
    return {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0, "runs": accs}


def evaluate_set(
    x: torch.Tensor,
    hard: torch.Tensor,
    soft: torch.Tensor | None,
    data: ImageData,
    cfg: EvalConfig,
    device: str | torch.device = "cpu",
    desc: str = "eval",
) -> dict:
    """Train `cfg.runs` fresh networks on (x, labels) and return test accuracy mean, std and runs."""
    if tuple(x.shape[1:]) != data.shape:
        raise UserError(
            f"images have shape {tuple(x.shape[1:])} but the dataset has {data.shape}; "
            "evaluate with the dataset (and size/channel options) they were made from"
        )
    if cfg.label_mode == "soft":
        if soft is None:
            raise UserError("this set has no soft labels; evaluate it with --label-mode hard --loss ce")
        if cfg.loss == "ce":
            raise UserError("loss 'ce' needs hard labels; use --label-mode hard or a soft loss (l1, kl)")
        targets = soft
    else:
        targets = hard
        if cfg.loss != "ce":
            raise UserError(f"hard labels are trained with 'ce', not '{cfg.loss}'; pass --loss ce")
    c, h, _ = data.shape
    accs = []
    for r in progress(range(cfg.runs), desc=desc, leave=False):
        with seeded(cfg.seed, "eval_init", r):
            net = build_net(cfg.arch, c, data.num_classes, h, **cfg.net_options).to(device)
        dsa = DSA(cfg.dsa_strategy, generator(cfg.seed, "eval_dsa", r)) if cfg.dsa else None
        train_net(
            net,
            x,
            targets,
            epochs=cfg.epochs,
            lr=cfg.lr,
            loss=cfg.loss,
            batch_size=cfg.batch_size,
            decay_after=cfg.epochs // 2 + 1,
            dsa=dsa,
            generator=generator(cfg.seed, "eval_order", r),
        )
        accs.append(accuracy(net, data.x_test, data.y_test))
    return {**summarise(accs), "protocol": cfg.describe(), "n_images": len(x)}


def random_subset(data: ImageData, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IPC random real training images per class (seeded): the baseline every table shows."""
    g = generator(seed, "random_subset")
    xs, ys = [], []
    for c in range(data.num_classes):
        idx = data.class_indices(c)
        if len(idx) < ipc:
            raise UserError(f"IPC {ipc} is larger than class {data.classes[c]!r} ({len(idx)} images)")
        pick = idx[torch.randperm(len(idx), generator=g)[:ipc]]
        xs.append(data.x_train[pick])
        ys.append(data.y_train[pick])
    return torch.cat(xs), torch.cat(ys)
