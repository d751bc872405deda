"""Teacher pools: N networks trained on the full training split, each kept at its best validation epoch.

A teacher pool is a pool of trained networks (`image/pools.py`): `teacher_i.safetensors` (+ `.json`), `pool.json`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from distillkit.data.images import ImageData
from distillkit.image.augment import DSA_STRATEGY
from distillkit.image.checkpoints import load_net, save_net
from distillkit.image.pools import PoolFolder, PoolKind, PoolNetConfig, train_networks
from distillkit.image.train import UntilConverged, accuracy

TEACHER_POOL = PoolKind(
    manifest="pool.json",
    key="teachers",
    stem="teacher",
    name="teacher pool",
    size_field="num_teachers",
    command="distill image teacher",
    scores=("val_acc", "test_acc"),
)


class TeacherConfig(PoolNetConfig):
    """How teachers are trained (spec defaults: 100 epochs, SGD 0.05, batch 256, DSA)."""

    num_teachers: int = Field(1, ge=1)
    epochs: int = Field(100, ge=1, description="the cap (with patience) or the fixed schedule (without)")
    patience: int | None = Field(
        10, ge=1, description="epochs without a better validation accuracy before lr x0.1, then before stopping"
    )
    lr: float = 0.05
    batch_size: int = 256
    dsa: bool = True
    dsa_strategy: str = DSA_STRATEGY
    seed: int = 0


def train_teacher(data: ImageData, cfg: TeacherConfig, index: int, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Train teacher `index`; keep the epoch with the best validation accuracy (never the test split).

    With `cfg.patience`, training runs until validation accuracy stops improving (`UntilConverged`, capped
    at `cfg.epochs`); without it, the published fixed schedule (lr x0.1 after half of `cfg.epochs`).
    """
    net = cfg.init_net(data, TEACHER_POOL, index, device)
    watch = UntilConverged(data.x_val, data.y_val, cfg.patience or cfg.epochs + 1, min_delta=0.0)
    decay_after = cfg.epochs + 1 if cfg.patience else cfg.epochs // 2
    cfg.train_on_real(net, data, TEACHER_POOL, index, decay_after, on_epoch=watch)
    watch.restore(net)
    fit = watch.summary()
    meta = {
        **cfg.net_meta(data, index),
        "best_epoch": fit["best_epoch"],
        "val_acc": fit["val_acc"],
        "epochs_run": fit["epochs_run"],
        "converged": fit["converged"] if cfg.patience else None,
        "test_acc": accuracy(net, data.x_test, data.y_test),
        "config": cfg.model_dump(),
    }
    return net, meta


def train_pool(data: ImageData, cfg: TeacherConfig, out: Path, device: str = "cpu") -> Path:
    """Train the pool into `out` (teacher_i.safetensors + pool.json); finished teachers are kept on resume.

    Under torchrun the teachers are shared over the processes (`pools.train_networks`); teacher i is the same
    network whichever process trains it. A folder holding teachers trained with other settings or for other
    data is refused, never reused.
    """

    def train_one(index: int, path: Path, dev: torch.device) -> None:
        net, meta = train_teacher(data, cfg, index, dev)
        save_net(net, path, meta)

    return train_networks(out, TEACHER_POOL, data, cfg.model_dump(), train_one, device)


class TeacherPool(PoolFolder):
    """A loaded pool: the networks, frozen, in manifest order, and their ids."""

    kind = TEACHER_POOL

    def __init__(self, manifest: Path, device: str = "cpu") -> None:
        super().__init__(manifest)
        self.nets, self.metas = [], []
        for path in self.files:
            net, meta = load_net(path, device)
            self.nets.append(net)
            self.metas.append(meta)

    def to(self, device: str | torch.device) -> TeacherPool:
        """The same pool with its networks moved to `device` (in place)."""
        for net in self.nets:
            net.to(device)
        return self
