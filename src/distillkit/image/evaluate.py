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
from torch import nn

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA, DSA_STRATEGY
from distillkit.image.batched import can_train_together, train_together
from distillkit.image.train import UntilConverged, accuracy, agreement, predict, train_net
from distillkit.nets import build_net, canonical_arch
from distillkit.progress import progress
from distillkit.seeding import generator, seeded


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
    dsa_strategy: str = DSA_STRATEGY
    random_draws: int = Field(3, ge=1, description="random real subsets the baseline averages over")
    batched: bool = Field(
        True,
        description="train the runs together as one grouped network (ConvNets; other networks train one after "
        "another); the same networks as one after another, to float rounding",
    )
    seed: int = 0

    def describe(self) -> str:
        labels = "teacher soft labels" if self.label_mode == "soft" else "hard labels"
        aug = "DSA" if self.dsa else "no augmentation"
        return f"{canonical_arch(self.arch)}, {labels}, {self.loss} loss, {self.epochs} epochs, {aug}, {self.runs} runs"


# A student that agrees with its own training targets on fewer of its training images than this is under-fit:
# its accuracy says more about the schedule than about the set (docs/apm.md, "Is the student fitted?").
MIN_FIT = 99.0


class FullDataConfig(BaseModel):
    """The full-data reference: the evaluation network trained on every training image (hard labels, CE)
    until validation accuracy stops improving (`UntilConverged`), so its epochs are chosen on validation."""

    model_config = ConfigDict(extra="forbid")

    runs: int = Field(3, ge=0)
    epochs: int = Field(100, ge=1, description="the cap; training usually stops earlier")
    patience: int = Field(10, ge=1, description="as the teacher's: a small validation split stalls by chance")
    lr: float = 0.05


def summarise(accs: list[float]) -> dict:
    return {"mean": statistics.fmean(accs), "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0, "runs": accs}


def fit_warning(result: dict) -> str | None:
    """A line saying an evaluation's students did not fit their own training set, or None when they did."""
    fit = result.get("train_fit")
    if fit is None or fit >= MIN_FIT:
        return None
    return (
        f"the students reach only {fit:.1f} % agreement with their own training targets (under {MIN_FIT:.0f} %): "
        "the evaluation schedule is too short or its learning rate too low for this set, so its accuracy is "
        "a lower bound; raise eval.epochs or eval.lr (choose them on the validation split)"
    )


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
    nets = eval_nets(cfg, data, device)
    together = train_runs(nets, x, targets, cfg, desc)
    accs = [accuracy(net, data.x_test, data.y_test) for net in nets]
    fit = statistics.fmean(agreement(net, x, targets) for net in nets)
    return {**summarise(accs), "train_fit": fit, "protocol": cfg.describe(), "n_images": len(x), "batched": together}


def eval_nets(
    cfg: EvalConfig, data: ImageData, device: str | torch.device = "cpu", runs: int | None = None
) -> list[nn.Module]:
    """The fresh evaluation networks of runs 0..runs-1 (`cfg.runs` unless given), run r built under its own seed."""
    c, h, _ = data.shape
    nets = []
    for r in range(cfg.runs if runs is None else runs):
        with seeded(cfg.seed, "eval_init", r):
            nets.append(build_net(cfg.arch, c, data.num_classes, h, **cfg.net_options).to(device))
    return nets


def eval_dsa(cfg: EvalConfig, run: int) -> DSA | None:
    """Run `run`'s augmentation (its own seeded draws), or None without DSA."""
    return DSA(cfg.dsa_strategy, generator(cfg.seed, "eval_dsa", run)) if cfg.dsa else None


def eval_order(cfg: EvalConfig, run: int) -> torch.Generator:
    """Run `run`'s batch order (its own seeded generator)."""
    return generator(cfg.seed, "eval_order", run)


def train_runs(
    nets: list[nn.Module], x: torch.Tensor, targets: torch.Tensor, cfg: EvalConfig, desc: str | None = None
) -> bool:
    """Train run r's network `nets[r]` on (x, targets) with its own augmentation draws and batch order.

    With `cfg.batched` and ConvNets the runs train together (`train_together`), else one after another
    (`train_net`); the networks come out the same up to float rounding. Returns whether they trained together.
    """
    schedule = {
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "loss": cfg.loss,
        "batch_size": cfg.batch_size,
        "decay_after": cfg.epochs // 2 + 1,
    }
    dsas = [eval_dsa(cfg, r) for r in range(len(nets))]
    orders = [eval_order(cfg, r) for r in range(len(nets))]
    if cfg.batched and can_train_together(nets):
        train_together(nets, x, targets, dsas=dsas, generators=orders, desc=desc, **schedule)
        return True
    for net, dsa, order in progress(list(zip(nets, dsas, orders, strict=True)), desc=desc, leave=False):
        train_net(net, x, targets, dsa=dsa, generator=order, **schedule)
    return False


def random_subset(data: ImageData, ipc: int, seed: int, draw: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """IPC random real training images per class (seeded; `draw` picks another subset of the same seed)."""
    g = generator(seed, "random_subset", draw)
    xs, ys = [], []
    for c in range(data.num_classes):
        idx = data.class_indices(c)
        if len(idx) < ipc:
            raise UserError(f"IPC {ipc} is larger than class {data.classes[c]!r} ({len(idx)} images)")
        pick = idx[torch.randperm(len(idx), generator=g)[:ipc]]
        xs.append(data.x_train[pick])
        ys.append(data.y_train[pick])
    return torch.cat(xs), torch.cat(ys)


def evaluate_random(
    data: ImageData,
    ipc: int,
    label_net: torch.nn.Module | None,
    cfg: EvalConfig,
    device: str | torch.device = "cpu",
    desc: str = "eval random",
) -> dict:
    """The random-subset baseline: `cfg.random_draws` seeded subsets, each scored by `evaluate_set`.

    mean is over every run of every draw; std is the standard deviation of the per-draw means (how much
    the baseline moves with the draw), the uncertainty every "gain over random" is judged against.
    With soft labels, `label_net` writes each subset's labels (the same teacher as the distilled set's).
    """
    per_draw = []
    for d in range(cfg.random_draws):
        x, y = random_subset(data, ipc, cfg.seed, d)
        soft = predict(label_net, x) if label_net is not None and cfg.label_mode == "soft" else None
        per_draw.append(evaluate_set(x, y, soft, data, cfg, device, f"{desc} {d + 1}/{cfg.random_draws}"))
    means = [r["mean"] for r in per_draw]
    runs = [a for r in per_draw for a in r["runs"]]
    return {
        "mean": statistics.fmean(runs),
        "std": statistics.stdev(means) if len(means) > 1 else per_draw[0]["std"],
        "std_over": "draws" if len(means) > 1 else "runs",
        "runs": runs,
        "draw_means": means,
        "train_fit": statistics.fmean(r["train_fit"] for r in per_draw),
        "protocol": f"{cfg.describe()}, {cfg.random_draws} random draws",
        "n_images": per_draw[0]["n_images"],
    }


def gain(result: dict, baseline: dict) -> dict:
    """Gain of a set over the random baseline, with its uncertainty: 2 x the baseline's std over draws.

    A gain is called significant only when its size exceeds that uncertainty.
    """
    value = result["mean"] - baseline["mean"]
    unc = 2 * baseline["std"]
    return {"value": value, "uncertainty": unc, "significant": abs(value) > unc}


def evaluate_full(data: ImageData, cfg: EvalConfig, full: FullDataConfig, device: str | torch.device = "cpu") -> dict:
    """The full-data reference: `full.runs` evaluation networks trained on all training images until converged.

    Each run keeps its best validation epoch; the test split is scored once, at that epoch. The result says
    how many epochs were chosen and whether every run stopped before the cap (`converged`).
    """
    accs, fits = [], []
    nets = eval_nets(cfg, data, device, full.runs)
    for r, net in enumerate(progress(nets, desc="eval full data", leave=False)):
        watch = UntilConverged(data.x_val, data.y_val, full.patience)
        train_net(
            net,
            data.x_train,
            data.y_train,
            epochs=full.epochs,
            lr=full.lr,
            loss="ce",
            batch_size=cfg.batch_size,
            decay_after=full.epochs + 1,
            dsa=eval_dsa(cfg, r),
            generator=eval_order(cfg, r),
            on_epoch=watch,
        )
        accs.append(accuracy(watch.restore(net), data.x_test, data.y_test))
        fits.append(watch.summary())
    arch = canonical_arch(cfg.arch)
    aug = "DSA" if cfg.dsa else "no augmentation"
    return {
        **summarise(accs),
        "protocol": f"{arch}, hard labels, ce loss, epochs chosen on validation (cap {full.epochs}), {aug}, "
        f"{full.runs} runs",
        "n_images": len(data.x_train),
        "epochs_chosen": [f["best_epoch"] for f in fits],
        "epochs_run": [f["epochs_run"] for f in fits],
        "val_acc": [f["val_acc"] for f in fits],
        "converged": all(f["converged"] for f in fits),
    }


def convergence_warnings(teacher_meta: dict, full: dict | None) -> list[str]:
    """Lines a report shows when its teacher or full-data reference stopped at the epoch cap."""
    out = []
    if teacher_meta.get("converged") is False:
        out.append(
            f"the teacher was still improving on validation when it hit its epoch cap ({teacher_meta['epochs_run']}): "
            "soft labels and APM come from an under-trained teacher; raise teacher.epochs"
        )
    if full is not None and full.get("converged") is False:
        out.append(
            "the full-data reference was still improving on validation at its epoch cap: it is a lower bound, "
            "not the ceiling; raise full.epochs"
        )
    return out
