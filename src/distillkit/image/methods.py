"""Every distillation method `distill image compare` can build, as a registry: name -> builder.

A builder has one signature, `build(data, context, ipc, run_dir) -> DistilledSet`; `context` carries what
the methods share (the settings, the teacher pool, the labelling teacher, the expert trajectories, the device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from distillkit.data.images import ImageData
from distillkit.image.apm import distill
from distillkit.image.coresets import coreset
from distillkit.image.distilled import DistilledSet
from distillkit.image.dm import distill_dm
from distillkit.image.experts import Experts
from distillkit.image.mtt import distill_mtt
from distillkit.image.teacher import TeacherPool


@dataclass
class BuildContext:
    """What the builders share: the comparison's settings (`CompareConfig`), pool, label teacher and device."""

    cfg: Any
    pool: TeacherPool
    label_net: nn.Module
    device: str
    experts: Experts | None = None  # loaded for the methods in NEEDS_EXPERTS only


Builder = Callable[[ImageData, BuildContext, int, Path], DistilledSet]


def build_apm(data: ImageData, ctx: BuildContext, ipc: int, run_dir: Path) -> DistilledSet:
    return distill(data, ctx.pool, ctx.cfg.apm.model_copy(update={"ipc": ipc}), run_dir, ctx.device)


def build_dm(data: ImageData, ctx: BuildContext, ipc: int, run_dir: Path) -> DistilledSet:
    return distill_dm(data, ctx.cfg.dm.model_copy(update={"ipc": ipc}), run_dir, ctx.device, ctx.label_net)


def _trajectory_matching(gradient: str) -> Builder:
    def build(data: ImageData, ctx: BuildContext, ipc: int, run_dir: Path) -> DistilledSet:
        mcfg = ctx.cfg.mtt.model_copy(update={"ipc": ipc, "gradient": gradient})
        return distill_mtt(data, ctx.experts, mcfg, run_dir, ctx.device, ctx.label_net)

    return build


def _coreset(method: str) -> Builder:
    def build(data: ImageData, ctx: BuildContext, ipc: int, run_dir: Path) -> DistilledSet:
        return coreset(data, method, ipc, ctx.label_net, ctx.cfg.seed)

    return build


BUILDERS: dict[str, Builder] = {
    "apm": build_apm,
    "mtt": _trajectory_matching("unrolled"),
    "tesla": _trajectory_matching("constant_memory"),
    "dm": build_dm,
    "herding": _coreset("herding"),
    "kcenter": _coreset("kcenter"),
    "random": _coreset("random"),
}
NEEDS_EXPERTS = frozenset({"mtt", "tesla"})
