"""APM: dataset distillation by adversarial prediction matching (single-level, segment-bounded memory).

Each image update minimises  -sum_k D(f_k(S_B), f_T(S_B)) + alpha * CE(f_T(S_B), y_B)  over a random
subset B of the synthetic images, where f_k are K frozen checkpoints of a proxy student trained to
match the teacher's logits on S, refreshed every R updates. The subset is processed in segments whose
gradients, weighted by |segment| / |B|, add up to the one-shot gradient: the segment size bounds memory.

Every random draw comes from a stream derived from (seed, stream, iteration), so a run resumed from a
checkpoint (saved at refresh boundaries) ends with exactly the images of an uninterrupted run.

Parallel variant: a `Group` distils one disjoint part of the synthetic set (a chunk of every class's
IPC budget, or every G-th class) with its own seed; image/parallel.py runs the groups and merges them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA, DSA_STRATEGY
from distillkit.image.checkpoints import load_state, save_state
from distillkit.image.distilled import DistilledSet, provenance
from distillkit.image.groups import Group
from distillkit.image.initial import init_images
from distillkit.image.losses import label_loss
from distillkit.image.teacher import TeacherPool
from distillkit.image.train import agreement, frozen, predict, train_net
from distillkit.nets import build_net
from distillkit.progress import progress
from distillkit.seeding import generator, seeded


class APMConfig(BaseModel):
    """Every knob of APM; defaults are the published settings (spec section 2.4)."""

    model_config = ConfigDict(extra="forbid")

    ipc: int = Field(10, ge=1)
    iterations: int = Field(2500, ge=1, description="T, image updates")
    lr_img: float = Field(1.0, gt=0)
    momentum_img: float = 0.5
    lr_img_decay: float = Field(0.3, description="lr factor applied once, after T/2 updates")
    batch_syn: int | None = Field(None, ge=1, description="B_syn, images per update (None: all C*IPC)")
    segment_size: int | None = Field(None, ge=1, description="B_seg, the memory knob (None: B_syn)")
    student_epochs: int = Field(250, ge=1, description="E, proxy-student epochs per refresh")
    num_checkpoints: int = Field(5, ge=1, description="K, proxy checkpoints kept")
    refresh_every: int = Field(3, ge=1, description="R, proxy refresh period in image updates")
    lr_net: float = Field(0.02, gt=0, description="proxy-student learning rate")
    proxy_batch: int = 256
    alpha_ce: float = 0.1
    discrepancy: Literal["l1", "mse", "kl"] = "l1"
    init: Literal["real", "noise"] = "real"
    label_mode: Literal["teacher_logits", "hard"] = "teacher_logits"
    teacher_draw: Literal["seeded", "fixed"] = "seeded"
    label_teacher: int = Field(0, ge=0, description="index of the pool teacher that writes the soft labels")
    dsa_strategy: str = DSA_STRATEGY
    checkpoint_every: int = Field(30, ge=1, description="save a resumable checkpoint about this often")
    reference_compat: bool = Field(False, description="reproduce the reference's off-by-one epoch counts")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> APMConfig:
        if self.num_checkpoints > self.student_epochs:
            raise ValueError("num_checkpoints (K) cannot exceed student_epochs (E)")
        return self

    def checkpoint_epochs(self) -> list[int]:
        """Epochs after which proxy checkpoints are kept: jE/K for j = 1..K (+1 each under reference_compat)."""
        e, k = self.student_epochs, self.num_checkpoints
        shift = 1 if self.reference_compat else 0
        return [round(j * e / k) + shift for j in range(1, k + 1)]


def discrepancy(name: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """D(f_k, f_T): mean absolute (l1), mean squared (mse) logit difference, or KL(teacher || student)."""
    if name == "kl":
        return F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    return label_loss(name, student, teacher)


def train_proxy(
    x: torch.Tensor, z: torch.Tensor, arch_meta: dict, cfg: APMConfig, step: int, device: torch.device
) -> list[nn.Module]:
    """Train a fresh proxy student to match teacher logits z on x under DSA; return K frozen checkpoints."""
    with seeded(cfg.seed, "proxy_init", step):
        net = build_net(
            arch_meta["arch"],
            arch_meta["channels"],
            arch_meta["num_classes"],
            arch_meta["image_size"],
            **arch_meta["net_options"],
        ).to(device)
    keep = set(cfg.checkpoint_epochs())
    ckpts: list[nn.Module] = []

    def snapshot(epoch: int, model: nn.Module) -> None:
        if epoch in keep:
            ckpts.append(frozen(copy.deepcopy(model)))

    epochs = cfg.student_epochs + (1 if cfg.reference_compat else 0)
    train_net(
        net,
        x,
        z,
        epochs=epochs,
        lr=cfg.lr_net,
        loss="l1",
        batch_size=cfg.proxy_batch,
        decay_after=cfg.student_epochs // 2 + 1,
        dsa=DSA(cfg.dsa_strategy, generator(cfg.seed, "proxy_dsa", step)),
        generator=generator(cfg.seed, "proxy_order", step),
        on_epoch=snapshot,
    )
    return ckpts


def image_gradient(
    images: torch.Tensor,
    labels: torch.Tensor,
    idx: torch.Tensor,
    teacher: nn.Module,
    ckpts: list[nn.Module],
    cfg: APMConfig,
    segment_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Gradient of the APM image loss over the subset `idx`, accumulated segment by segment.

    Returns the gradient (shaped like `images`, zero outside `idx`) and the loss terms' values.
    Each segment s contributes (|s| / |idx|) * [ -sum_k D(f_k(S_s), f_T(S_s)) + alpha * CE(f_T(S_s), y_s) ],
    so the sum equals the gradient of the same loss over `idx` in one shot. The teacher's forward is
    computed once per segment and reused for the K checkpoints; gradients flow through teacher and
    checkpoint outputs alike.
    """
    device = next(teacher.parameters()).device
    leaf = images.detach().to(device).requires_grad_(True)
    seg = segment_size or cfg.segment_size or len(idx)
    total = len(idx)
    # loss terms summed on the device in float64 (one read-back at the end, not one sync per segment)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for part in idx.split(seg):
        xs = leaf[part.to(device)]
        weight = len(part) / total
        t_out = teacher(xs)
        ce = weight * F.cross_entropy(t_out, labels[part].to(device))
        sums[1] += ce.detach().double()
        for k, ckpt in enumerate(ckpts):
            d = weight * discrepancy(cfg.discrepancy, ckpt(xs), t_out)
            sums[0] += d.detach().double()
            last = k == len(ckpts) - 1
            (-d + cfg.alpha_ce * ce if last else -d).backward(retain_graph=not last)
        if not ckpts:
            (cfg.alpha_ce * ce).backward()
    discrepancy_sum, ce_sum = sums.tolist()
    return leaf.grad.to(images.device), {"discrepancy": discrepancy_sum, "ce": ce_sum}


def proxy_fit_of(history: list[dict]) -> float | None:
    """Mean agreement (%) of the last proxy checkpoint with the teacher on the images it was trained on.

    Near chance (100 / classes) means the proxy students never learned: the images were then pushed away
    from an untrained network, not from a student (docs/apm.md, "Is the student fitted?").
    """
    fits = [h["proxy_fit"] for h in history if "proxy_fit" in h]
    return sum(fits) / len(fits) if fits else None


class APMState:
    """What a checkpoint holds: the images, the optimiser state and the next iteration."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, cfg: APMConfig) -> None:
        self.images = images.requires_grad_(True)
        self.labels = labels
        self.opt = torch.optim.SGD([self.images], lr=cfg.lr_img, momentum=cfg.momentum_img)
        self.t = 0
        self.history: list[dict] = []
        self.seconds = 0.0

    def save(self, path: Path, cfg: APMConfig, group: Group | None = None) -> None:
        blob = {
            "images": self.images.detach(),
            "labels": self.labels,
            "opt": self.opt.state_dict(),
            "t": self.t,
            "history": self.history,
            "seconds": self.seconds,
        }
        if group is not None:
            blob["group"] = group.as_dict()
        save_state(path, blob, cfg.model_dump())

    @classmethod
    def load(cls, path: Path, cfg: APMConfig, group: Group | None = None) -> APMState:
        blob = load_state(path, cfg.model_dump(), "APM")
        wanted = group.as_dict() if group else None
        if blob.get("group") != wanted:
            raise UserError(
                f"checkpoint {path} was written for group {blob.get('group')}, not {wanted}; "
                "use the same --groups/--group-split or a new --out directory"
            )
        state = cls(blob["images"].clone(), blob["labels"], cfg)
        state.opt.load_state_dict(blob["opt"])
        state.t, state.history, state.seconds = blob["t"], blob["history"], blob.get("seconds", 0.0)
        return state


def distill(
    data: ImageData,
    pool: TeacherPool,
    cfg: APMConfig,
    run_dir: Path | None = None,
    device: str | torch.device = "cpu",
    on_iteration: Callable[[int, APMState], None] | None = None,
    group: Group | None = None,
) -> DistilledSet:
    """Run APM; with `run_dir`, checkpoint there (apm_state.pt) and resume from it when present.

    With `group`, distil only that group's part of the set, drawing every random stream except the initial
    permutation from the group's own seed (`Group.seed(cfg.seed)`); the meta records the group.
    """
    device = torch.device(device)
    pool.check_matches(data)
    if cfg.label_teacher >= len(pool):
        raise UserError(f"label_teacher {cfg.label_teacher} is not in the pool of {len(pool)} teachers")
    if group is not None:
        group.check(cfg.ipc, data.num_classes)
    run_cfg = cfg if group is None else cfg.model_copy(update={"seed": group.seed(cfg.seed)})
    ckpt_path = Path(run_dir) / "apm_state.pt" if run_dir else None
    if ckpt_path:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if ckpt_path and ckpt_path.exists():
        state = APMState.load(ckpt_path, cfg, group)
    else:
        state = APMState(*init_images(data, cfg, group), cfg)
    teachers = [frozen(t.to(device)) for t in pool.nets]
    n_syn = len(state.labels)
    b_syn = min(cfg.batch_syn or n_syn, n_syn)
    every = max(cfg.refresh_every, cfg.checkpoint_every // cfg.refresh_every * cfg.refresh_every)
    ckpts: list[nn.Module] = []
    teacher = teachers[0]
    bar = progress(range(state.t, cfg.iterations), desc="APM", total=cfg.iterations, initial=state.t)
    for t in bar:
        start = time.perf_counter()
        if t == cfg.iterations // 2 and t > 0:
            for param_group in state.opt.param_groups:
                param_group["lr"] = cfg.lr_img * cfg.lr_img_decay
        idx = torch.randperm(n_syn, generator=generator(run_cfg.seed, "subset", t))[:b_syn]
        fit: dict[str, float] = {}
        if t % cfg.refresh_every == 0 or not ckpts:
            if cfg.teacher_draw == "fixed":
                teacher = teachers[cfg.label_teacher]
            else:
                pick = torch.randint(len(teachers), (1,), generator=generator(run_cfg.seed, "pool", t))
                teacher = teachers[int(pick)]
            x_sub = state.images.detach()[idx]
            z = predict(teacher, x_sub)
            ckpts = train_proxy(x_sub, z, pool.metas[0], run_cfg, t, device)
            fit = {"proxy_fit": agreement(ckpts[-1], x_sub, z)}
        grad, stats = image_gradient(state.images, state.labels, idx, teacher, ckpts, run_cfg)
        state.history.append({"t": t, **stats, **fit})
        state.opt.zero_grad(set_to_none=True)
        state.images.grad = grad
        state.opt.step()
        state.t = t + 1
        state.seconds += time.perf_counter() - start
        if on_iteration is not None:
            on_iteration(t, state)
        if ckpt_path and (state.t % every == 0 or state.t == cfg.iterations):
            state.save(ckpt_path, cfg, group)
    images = state.images.detach()
    label_net = teachers[cfg.label_teacher]
    soft = predict(label_net, images)
    meta = {
        **provenance("apm", data, cfg.ipc),
        "label_teacher": pool.ids[cfg.label_teacher],
        "teacher_pool": pool.ids,
        "arch": pool.metas[0]["arch"],
        "label_mode": cfg.label_mode,
        "apm_config": cfg.model_dump(),
        "distill_seconds": state.seconds,
        "proxy_fit": proxy_fit_of(state.history),
    }
    if group is not None:
        start, stop = group.ipc_range(cfg.ipc)
        meta["ipc"] = stop - start
        meta["group"] = {
            **group.as_dict(),
            "seed": run_cfg.seed,
            "classes": group.classes(data.num_classes),
            "ipc_range": [start, stop],
        }
    return DistilledSet(images, state.labels.clone(), soft, meta, data.zca)
