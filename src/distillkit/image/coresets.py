"""Coreset baselines: pick IPC real images per class by herding or k-center on teacher features.

Features are the teacher's penultimate-layer embedding (`net.embed`), as coreset baselines in dataset
distillation use a trained network's features. Both selections (`distillkit.coresets`, in the embedding's
float32) are deterministic given the features; k-center starts at the point nearest the class mean.
"""

from __future__ import annotations

import torch
from torch import nn

from distillkit.coresets import greedy_k_center, herding
from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.distilled import DistilledSet, provenance
from distillkit.image.evaluate import random_subset
from distillkit.image.train import predict

CORESETS = ("herding", "kcenter", "random")


def embed(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Penultimate-layer features of `net` on x (evaluation mode), on the CPU."""
    if not hasattr(net, "embed"):
        raise UserError(f"{type(net).__name__} has no feature embedding; use a registered architecture")
    return predict(net, x, batch_size, fn=net.embed)


def coreset(data: ImageData, method: str, ipc: int, net: nn.Module, seed: int = 0) -> DistilledSet:
    """IPC real training images per class chosen by `method`; soft labels are `net`'s logits."""
    if method not in CORESETS:
        raise UserError(f"unknown coreset method '{method}'; choose one of {', '.join(CORESETS)}")
    if method == "random":
        x, y = random_subset(data, ipc, seed)
    else:
        pick = herding if method == "herding" else greedy_k_center
        xs, ys = [], []
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            if len(idx) < ipc:
                raise UserError(
                    f"IPC {ipc} is larger than class {data.classes[c]!r} ({len(idx)} training images); "
                    "choose a smaller --ipc"
                )
            chosen = idx[torch.from_numpy(pick(embed(net, data.x_train[idx]), ipc))]
            xs.append(data.x_train[chosen])
            ys.append(data.y_train[chosen])
        x, y = torch.cat(xs), torch.cat(ys)
    meta = {
        **provenance(method, data, ipc),
        "features": "teacher embedding",
    }
    return DistilledSet(x.clone(), y.clone(), predict(net, x), meta, data.zca)
