"""MTT's expert trajectories: networks trained on the real data whose parameters are kept after every epoch.

An expert pool is a pool of trained networks (`image/pools.py`): `expert_i.safetensors` holds expert i's
(epochs + 1, P) trajectory, `experts.json` lists them. Rows are read from disk only when MTT needs them.
"""

from __future__ import annotations

from pathlib import Path

import safetensors
import torch
from pydantic import Field
from torch import nn

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA_STRATEGY
from distillkit.image.checkpoints import read_meta, write_safetensors
from distillkit.image.pools import PoolFolder, PoolKind, PoolNetConfig, train_networks
from distillkit.image.train import accuracy
from distillkit.nets import build_net

EXPERT_POOL = PoolKind(
    manifest="experts.json",
    key="experts",
    stem="expert",
    name="expert pool",
    size_field="num_experts",
    command="distill image experts",
    scores=("val_acc",),
)


class ExpertConfig(PoolNetConfig):
    """How expert trajectories are trained (MTT's buffer.py: 100 experts, 50 epochs, SGD 0.01, no momentum)."""

    num_experts: int = Field(100, ge=1)
    epochs: int = Field(50, ge=1, description="trajectory length: parameters are kept at epochs 0..epochs")
    lr: float = Field(0.01, gt=0, description="constant learning rate")
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1)
    dsa: bool = True
    dsa_strategy: str = DSA_STRATEGY
    seed: int = 0


def flat_params(net: nn.Module) -> torch.Tensor:
    """All parameters of `net` as one detached vector, in `named_parameters` order."""
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def train_expert(
    data: ImageData, cfg: ExpertConfig, index: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, dict]:
    """Train expert `index` on the real training split; return its (epochs + 1, P) trajectory and metadata."""
    net = cfg.init_net(data, EXPERT_POOL, index, device)
    rows = [flat_params(net).cpu()]
    cfg.train_on_real(
        net,
        data,
        EXPERT_POOL,
        index,
        decay_after=cfg.epochs,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        on_epoch=lambda _e, m: rows.append(flat_params(m).cpu()),
    )
    meta = {
        **cfg.net_meta(data, index),
        "epochs": cfg.epochs,
        "num_params": int(rows[0].numel()),
        "val_acc": accuracy(net, data.x_val, data.y_val),
        "config": cfg.model_dump(),
    }
    return torch.stack(rows), meta


def train_experts(data: ImageData, cfg: ExpertConfig, out: Path, device: str | torch.device = "cpu") -> Path:
    """Train the experts into `out` (expert_i.safetensors + experts.json); finished experts are kept on resume.

    Under torchrun the experts are shared over the processes (`pools.train_networks`); expert i is the same
    trajectory whichever process trains it. A folder holding experts trained with other settings or on other
    data is refused, never reused.
    """

    def train_one(index: int, path: Path, dev: torch.device) -> None:
        trajectory, meta = train_expert(data, cfg, index, dev)
        write_safetensors(path, {"trajectory": trajectory.contiguous()}, meta)

    setup = cfg.model_dump(exclude={"num_experts"})
    return train_networks(out, EXPERT_POOL, data, cfg.model_dump(), train_one, device, {"config": setup})


class Experts(PoolFolder):
    """A folder of expert trajectories. Rows are read from disk when needed, so the pool size costs no memory."""

    kind = EXPERT_POOL

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        super().__init__(path)
        self.device = torch.device(device)
        metas = [self.header(f) for f in self.files]
        self.meta = metas[0]
        self.epochs = min(m["epochs"] for m in metas)

    @staticmethod
    def header(path: Path) -> dict:
        """An expert file's metadata, once its trajectory is checked to have the shape the metadata gives."""
        meta = read_meta(path)
        try:
            with safetensors.safe_open(path, framework="pt") as f:
                shape = f.get_slice("trajectory").get_shape()
            if shape != [meta["epochs"] + 1, meta["num_params"]]:
                raise ValueError("the trajectory does not have the shape its metadata gives")
        except Exception as e:  # noqa: BLE001 - any unreadable file means the same thing to the user
            raise UserError(
                f"{path} is missing or damaged ({type(e).__name__}); delete it and train it again"
            ) from None
        return meta

    def build_net(self) -> nn.Module:
        m = self.meta
        return build_net(m["arch"], m["channels"], m["num_classes"], m["image_size"], **m["net_options"])

    def pair(self, index: int, start: int, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of expert `index` at epochs `start` and `start + span`, on the device."""
        try:
            with safetensors.safe_open(self.files[index], framework="pt") as f:
                rows = f.get_slice("trajectory")
                first, last = rows[start : start + 1][0], rows[start + span : start + span + 1][0]
        except Exception as e:  # noqa: BLE001
            raise UserError(
                f"expert file {self.files[index]} cannot be read ({type(e).__name__}); "
                "delete it and run `distill image experts` again"
            ) from None
        return first.to(self.device), last.to(self.device)
