"""MTT and TESLA: dataset distillation by matching training trajectories (baselines beside APM).

MTT (Cazenavette et al. 2022). Experts are trained on the real data with a constant learning rate, and
their parameters are kept after every epoch (image/experts.py). Each iteration starts a student at θ*_t
(a random expert, a random start epoch t < max_start_epoch), takes N SGD steps with a learnable learning
rate α on batches of synthetic images (DSA on), and lowers

    L = ||θ_N - θ*_{t+M}||² / ||θ*_t - θ*_{t+M}||²

over the images and α. `gradient="unrolled"` back-propagates through all N steps, as MTT: memory grows
linearly with N.

TESLA (Cui et al. 2023), `gradient="constant_memory"`. Write g_i = ∇_θ ℓ(θ_i; X_i), G = Σ g_i and
r = θ_N - θ* (so θ_N = θ_t - αG). TESLA takes

    dL/dX_i = -(2α / D) rᵀ ∂g_i/∂X_i        dL/dα = -(2 / D) rᵀ G        (D = ||θ*_t - θ*_{t+M}||²)

Each g_i thus depends on the images only through its own batch X_i, with the student parameters θ_i held
fixed. The paper calls this the exact unrolled gradient. It is exact for N = 1, and the loss value is always
exact. For N > 1 it drops the terms through which X_i moves the later θ_j (j > i), which are products with
the Hessians of ℓ, so it is a first-order approximation of MTT's gradient. tests/test_mtt.py checks both
facts. This implementation runs two passes: the first finds θ_N, and the second replays the same steps
(same batches, same augmentation) and back-propagates one step at a time. Memory therefore holds one
step's graph and a few parameter vectors whatever N is; the reference code also keeps all N parameter vectors.

Every random draw comes from a stream derived from (seed, stream, iteration). A run resumed from
`run_dir/mtt_state.pt` therefore ends with exactly the images of an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.func import functional_call

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA, DSA_STRATEGY
from distillkit.image.checkpoints import load_state, save_state
from distillkit.image.distilled import DistilledSet, provenance
from distillkit.image.experts import Experts
from distillkit.image.initial import init_images
from distillkit.image.losses import label_loss
from distillkit.image.train import predict
from distillkit.progress import progress
from distillkit.seeding import generator


class MTTConfig(BaseModel):
    """Every knob of MTT/TESLA. The defaults are MTT's CIFAR-10 IPC 10 settings (with ZCA in the original)."""

    model_config = ConfigDict(extra="forbid")

    ipc: int = Field(10, ge=1)
    iterations: int = Field(5000, ge=1)
    syn_steps: int = Field(30, ge=1, description="N, student steps per iteration")
    expert_epochs: int = Field(2, ge=1, description="M, expert epochs the N steps must match")
    max_start_epoch: int = Field(20, ge=1, description="start epochs are drawn from 0..max_start_epoch-1")
    lr_img: float = Field(100.0, gt=0)
    lr_lr: float = Field(1e-5, ge=0)
    syn_lr_init: float = Field(0.001, gt=0, description="initial learnable student learning rate α")
    momentum: float = 0.5
    batch_syn: int | None = Field(None, ge=1, description="images per student step (None: all)")
    init: Literal["real", "noise"] = "real"
    label_mode: Literal["hard", "teacher_logits"] = "hard"
    dsa_strategy: str = Field(DSA_STRATEGY, description="'' turns augmentation off")
    gradient: Literal["unrolled", "constant_memory"] = "unrolled"
    checkpoint_every: int = Field(50, ge=1)
    seed: int = 0


# ---------------------------------------------------------------- the student


class Diverged(UserError):
    """A distillation whose images went to NaN or infinity: its knobs do not suit the data."""


def check_diverged(method: str, t: int, loss: float, syn_lr: float) -> None:
    """Stop with one line when the matching loss is not finite or the learnable student lr is no longer
    positive: the images would only fill with NaN (students trained on them sit at chance)."""
    if not (math.isfinite(loss) and math.isfinite(syn_lr) and syn_lr > 0):
        raise Diverged(
            f"{method.upper()} diverged at iteration {t}: matching loss {loss:.3g}, learnable student lr "
            f"{syn_lr:.3g}; lower mtt.lr_lr or mtt.lr_img for this dataset, or choose them on validation "
            f"(distill image tune --method {method})"
        )


class FlatNet:
    """A network evaluated at a flat parameter vector (`torch.func.functional_call`): MTT's student."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        named = list(net.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.num_params = sum(self.sizes)

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        views = zip(self.names, theta.split(self.sizes), self.shapes, strict=True)
        return functional_call(self.net, {n: v.view(s) for n, v, s in views}, (x,))


# ---------------------------------------------------------------- the matching gradient


def batch_plan(n: int, batch: int, steps: int, seed: int, t: int) -> Iterator[torch.Tensor]:
    """Synthetic-image indices of each student step: chunks of fresh seeded permutations, as MTT draws them."""
    g = generator(seed, "batches", t)
    chunks: list[torch.Tensor] = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.randperm(n, generator=g).split(batch))
        yield chunks.pop()


def student_steps(cfg: MTTConfig, n: int, t: int) -> Iterator[tuple[torch.Tensor, DSA]]:
    """(indices, augmentation) of every student step of iteration t; identical on every call."""
    batch = min(cfg.batch_syn or n, n)
    for i, idx in enumerate(batch_plan(n, batch, cfg.syn_steps, cfg.seed, t)):
        yield idx, DSA(cfg.dsa_strategy, generator(cfg.seed, f"dsa{i}", t))


def _step_loss(student: FlatNet, theta: torch.Tensor, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE against class ids, or soft CE against teacher logits."""
    return label_loss("soft_ce" if targets.is_floating_point() else "ce", student(theta, x), targets)


def matching_gradient(
    student: FlatNet,
    images: torch.Tensor,
    targets: torch.Tensor,
    syn_lr: torch.Tensor,
    start: torch.Tensor,
    target: torch.Tensor,
    cfg: MTTConfig,
    t: int,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """dL/d images, dL/d α and L for iteration t (steps and augmentations drawn from (cfg.seed, t))."""
    denom = (start - target).pow(2).sum()
    if cfg.gradient == "unrolled":
        x = images.detach().requires_grad_(True)
        lr = syn_lr.detach().requires_grad_(True)
        theta = start.detach().requires_grad_(True)
        for idx, dsa in student_steps(cfg, len(x), t):
            idx = idx.to(x.device)
            g = torch.autograd.grad(_step_loss(student, theta, dsa(x[idx]), targets[idx]), theta, create_graph=True)[0]
            theta = theta - lr * g
        loss = (theta - target).pow(2).sum() / denom
        grad_x, grad_lr = torch.autograd.grad(loss, (x, lr))
        return grad_x, grad_lr, loss.item()

    alpha = syn_lr.item()
    x0 = images.detach()
    theta, total = start.detach(), torch.zeros_like(start)
    for idx, dsa in student_steps(cfg, len(x0), t):  # pass 1: theta_N and G, no graph kept
        idx = idx.to(x0.device)
        theta.requires_grad_(True)
        g = torch.autograd.grad(_step_loss(student, theta, dsa(x0[idx]), targets[idx]), theta)[0]
        total += g
        theta = (theta - alpha * g).detach()
    residual = theta - target
    loss = residual.pow(2).sum() / denom
    coef = -2 * alpha / denom
    grad_x = torch.zeros_like(x0)
    theta = start.detach()
    for idx, dsa in student_steps(cfg, len(x0), t):  # pass 2: replay, one step's graph at a time
        idx = idx.to(x0.device)
        xi = x0[idx].requires_grad_(True)
        theta.requires_grad_(True)
        g = torch.autograd.grad(_step_loss(student, theta, dsa(xi), targets[idx]), theta, create_graph=True)[0]
        grad_x.index_add_(0, idx, torch.autograd.grad(coef * (residual @ g), xi)[0])
        theta = (theta - alpha * g).detach()
    grad_lr = -2 * (residual @ total) / denom
    return grad_x, grad_lr.reshape(syn_lr.shape), loss.item()


# ---------------------------------------------------------------- the distillation loop


class MTTState:
    """What a checkpoint holds: images, the learnable lr, both optimisers' states and the next iteration."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, cfg: MTTConfig, device: torch.device) -> None:
        self.images = images.to(device).requires_grad_(True)
        self.labels = labels.to(device)
        self.syn_lr = torch.tensor(cfg.syn_lr_init, device=device).requires_grad_(True)
        self.opt_img = torch.optim.SGD([self.images], lr=cfg.lr_img, momentum=cfg.momentum)
        self.opt_lr = torch.optim.SGD([self.syn_lr], lr=cfg.lr_lr, momentum=cfg.momentum)
        self.t = 0
        self.history: list[dict] = []
        self.seconds = 0.0

    def save(self, path: Path, cfg: MTTConfig) -> None:
        blob = {
            "images": self.images.detach().cpu(),
            "labels": self.labels.cpu(),
            "syn_lr": self.syn_lr.detach().cpu(),
            "opt_img": self.opt_img.state_dict(),
            "opt_lr": self.opt_lr.state_dict(),
            "t": self.t,
            "history": self.history,
            "seconds": self.seconds,
        }
        save_state(path, blob, cfg.model_dump())

    @classmethod
    def load(cls, path: Path, cfg: MTTConfig, device: torch.device) -> MTTState:
        blob = load_state(path, cfg.model_dump(), "MTT")
        state = cls(blob["images"].clone(), blob["labels"], cfg, device)
        with torch.no_grad():
            state.syn_lr.copy_(blob["syn_lr"])
        state.opt_img.load_state_dict(blob["opt_img"])
        state.opt_lr.load_state_dict(blob["opt_lr"])
        state.t, state.history, state.seconds = blob["t"], blob["history"], blob["seconds"]
        return state


def distill_mtt(
    data: ImageData,
    experts: Experts,
    cfg: MTTConfig,
    run_dir: Path | None = None,
    device: str | torch.device = "cpu",
    label_net: nn.Module | None = None,
    on_iteration: Callable[[int, MTTState], None] | None = None,
) -> DistilledSet:
    """Run MTT (or TESLA); with `run_dir`, checkpoint there (mtt_state.pt) and resume from it when present.

    `label_net` (e.g. a pool teacher) writes the set's soft labels, so it can be evaluated like the others.
    """
    device = torch.device(device)
    experts.check_matches(data)
    needed = cfg.max_start_epoch - 1 + cfg.expert_epochs
    if needed > experts.epochs:
        raise UserError(
            f"max_start_epoch {cfg.max_start_epoch} and expert_epochs {cfg.expert_epochs} need "
            f"trajectories of {needed} epochs, but these have {experts.epochs}; lower them or train "
            "longer experts"
        )
    ckpt_path = Path(run_dir) / "mtt_state.pt" if run_dir else None
    if ckpt_path:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if ckpt_path and ckpt_path.exists():
        state = MTTState.load(ckpt_path, cfg, device)
    else:
        # the seeded initial images APM and DM start from too, so all start from the same real images
        state = MTTState(*init_images(data, cfg), cfg, device)
    student = FlatNet(experts.build_net().to(device))
    method = "tesla" if cfg.gradient == "constant_memory" else "mtt"
    for t in progress(range(state.t, cfg.iterations), desc=method.upper(), total=cfg.iterations, initial=state.t):
        begin = time.perf_counter()
        e = int(torch.randint(len(experts), (1,), generator=generator(cfg.seed, "expert", t)))
        s = int(torch.randint(cfg.max_start_epoch, (1,), generator=generator(cfg.seed, "start", t)))
        start, target = experts.pair(e, s, cfg.expert_epochs)
        targets = state.labels
        if cfg.label_mode == "teacher_logits":  # TESLA's soft labels: the expert at the target epoch
            with torch.no_grad():
                x = state.images.detach()
                targets = torch.cat([student(target, x[i : i + 500]) for i in range(0, len(x), 500)])
        grad_x, grad_lr, loss = matching_gradient(student, state.images, targets, state.syn_lr, start, target, cfg, t)
        state.opt_img.zero_grad(set_to_none=True)
        state.opt_lr.zero_grad(set_to_none=True)
        state.images.grad, state.syn_lr.grad = grad_x, grad_lr
        state.opt_img.step()
        state.opt_lr.step()
        check_diverged(method, t, loss, state.syn_lr.item())
        state.t = t + 1
        state.seconds += time.perf_counter() - begin
        state.history.append({"t": t, "loss": loss, "expert": e, "start_epoch": s, "syn_lr": state.syn_lr.item()})
        if on_iteration is not None:
            on_iteration(t, state)
        if ckpt_path and (state.t % cfg.checkpoint_every == 0 or state.t == cfg.iterations):
            state.save(ckpt_path, cfg)
    images = state.images.detach().cpu()
    soft = predict(label_net, images) if label_net is not None else None
    meta = {
        **provenance(method, data, cfg.ipc),
        "arch": experts.meta["arch"],
        "experts": experts.ids,
        "label_mode": cfg.label_mode,
        "mtt_config": cfg.model_dump(),
        "distill_seconds": state.seconds,
        "syn_lr": state.syn_lr.item(),
    }
    return DistilledSet(images, state.labels.cpu().clone(), soft, meta, data.zca)
