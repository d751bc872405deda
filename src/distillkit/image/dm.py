"""DM: dataset distillation by distribution matching (Zhao & Bilen, WACV 2023).

Each iteration samples a freshly initialised network (never trained) and, for every class, moves the
synthetic images so that the mean of their embeddings matches the mean embedding of a batch of real
images of that class, both under the same (siamese) DSA transform. The images are the only parameters;
checkpoints at `checkpoint_every` iterations make a resumed run end with the same images.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from distillkit.data.images import ImageData
from distillkit.image.augment import DSA, DSA_STRATEGY
from distillkit.image.checkpoints import load_state, save_state
from distillkit.image.distilled import DistilledSet, provenance
from distillkit.image.initial import init_images
from distillkit.image.train import frozen, predict
from distillkit.nets import build_net
from distillkit.progress import progress
from distillkit.seeding import derive_seed, generator, seeded


class DMConfig(BaseModel):
    """DM's knobs; defaults are the published ones (20000 iterations, image lr 1, momentum 0.5, 256 real)."""

    model_config = ConfigDict(extra="forbid")

    ipc: int = Field(10, ge=1)
    iterations: int = Field(20000, ge=1)
    lr_img: float = Field(1.0, gt=0)
    momentum_img: float = 0.5
    batch_real: int = Field(256, ge=1)
    arch: str = "convnet"
    net_options: dict = Field(default_factory=dict)
    init: str = "real"
    dsa_strategy: str = DSA_STRATEGY
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0


def matching_loss(net: nn.Module, real: list[torch.Tensor], syn: list[torch.Tensor], seed: int, t: int) -> torch.Tensor:
    """Sum over classes of ||mean embed(DSA(real_c)) - mean embed(DSA(syn_c))||^2, siamese DSA per class."""
    loss = torch.zeros((), device=syn[0].device)
    for c, (xr, xs) in enumerate(zip(real, syn, strict=True)):
        s = derive_seed(seed, f"dm_dsa_{c}", t)
        dsa_r = DSA(generator=torch.Generator().manual_seed(s), siamese=True)
        dsa_s = DSA(generator=torch.Generator().manual_seed(s), siamese=True)
        mean_r = net.embed(dsa_r(xr)).mean(0).detach()
        mean_s = net.embed(dsa_s(xs)).mean(0)
        loss = loss + ((mean_r - mean_s) ** 2).sum()
    return loss


def distill_dm(
    data: ImageData,
    cfg: DMConfig,
    run_dir: Path | None = None,
    device: str | torch.device = "cpu",
    label_net: nn.Module | None = None,
) -> DistilledSet:
    """Run DM; with `run_dir`, checkpoint there (dm_state.pt) and resume from it when present."""
    device = torch.device(device)
    state_path = Path(run_dir) / "dm_state.pt" if run_dir else None
    images, labels = init_images(data, cfg)  # same real-image initialisation as APM (seeded, distinct)
    images = images.to(device).requires_grad_(True)
    opt = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum_img)
    start_t, seconds, history = 0, 0.0, []
    if state_path and state_path.exists():
        blob = load_state(state_path, cfg.model_dump(), "DM")
        with torch.no_grad():
            images.copy_(blob["images"])
        opt.load_state_dict(blob["opt"])
        start_t, seconds, history = blob["t"], blob["seconds"], blob["history"]
    per_class = [data.class_indices(c) for c in range(data.num_classes)]
    syn_idx = [torch.nonzero(labels == c).flatten().to(device) for c in range(data.num_classes)]
    c, h, _ = data.shape
    for t in progress(range(start_t, cfg.iterations), desc="DM", total=cfg.iterations, initial=start_t):
        tick = time.perf_counter()
        with seeded(cfg.seed, "dm_net", t):
            net = frozen(build_net(cfg.arch, c, data.num_classes, h, **cfg.net_options).to(device)).train()
        g = generator(cfg.seed, "dm_real", t)
        real = [
            data.x_train[idx[torch.randperm(len(idx), generator=g)[: cfg.batch_real]]].to(device) for idx in per_class
        ]
        loss = matching_loss(net, real, [images[i] for i in syn_idx], cfg.seed, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - tick
        history.append({"t": t, "loss": loss.item() / data.num_classes})
        if state_path and ((t + 1) % cfg.checkpoint_every == 0 or t + 1 == cfg.iterations):
            blob = {
                "images": images.detach().cpu(),
                "opt": opt.state_dict(),
                "t": t + 1,
                "seconds": seconds,
                "history": history,
            }
            save_state(state_path, blob, cfg.model_dump())
    out = images.detach().cpu()
    meta = {
        **provenance("dm", data, cfg.ipc),
        "arch": cfg.arch,
        "dm_config": cfg.model_dump(),
        "distill_seconds": seconds,
        "history": history[-1:],
    }
    return DistilledSet(out, labels.clone(), predict(label_net, out) if label_net is not None else None, meta, data.zca)
