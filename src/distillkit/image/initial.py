"""The seeded initial synthetic images that APM, DM and MTT start from (so they start alike for one seed)."""

from __future__ import annotations

from typing import Protocol

import torch

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.groups import Group
from distillkit.seeding import generator


class InitSettings(Protocol):
    """What `init_images` reads from a method's config (APMConfig, DMConfig and MTTConfig all carry it)."""

    @property
    def ipc(self) -> int: ...

    @property
    def init(self) -> str: ...  # "real" or "noise"

    @property
    def seed(self) -> int: ...


def init_images(data: ImageData, cfg: InitSettings, group: Group | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """IPC distinct real images per class (seeded), or N(0, 1) noise; labels are class ids.

    With a group, only its classes and its chunk of the IPC budget: every group draws the same per-class
    permutation (from `cfg.seed`) and takes its own slice, so real initial images never repeat across
    groups and together they are the ungrouped run's initial images. Noise comes from the group's seed.
    """
    g = generator(cfg.seed, "init")
    noise = g if group is None else generator(group.seed(cfg.seed), "init")
    wanted = set(group.classes(data.num_classes)) if group else None
    start, stop = group.ipc_range(cfg.ipc) if group else (0, cfg.ipc)
    xs, ys = [], []
    for c in range(data.num_classes):
        idx = data.class_indices(c)
        if len(idx) < cfg.ipc:
            raise UserError(
                f"IPC {cfg.ipc} is larger than class {data.classes[c]!r} ({len(idx)} training images); "
                "choose a smaller --ipc"
            )
        perm = torch.randperm(len(idx), generator=g)
        if wanted is not None and c not in wanted:
            continue
        pick = idx[perm[start:stop]]
        xs.append(
            data.x_train[pick] if cfg.init == "real" else torch.randn((stop - start, *data.shape), generator=noise)
        )
        ys.append(torch.full((stop - start,), c, dtype=torch.long))
    return torch.cat(xs).clone(), torch.cat(ys)
