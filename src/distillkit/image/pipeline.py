"""`distill image run`: teacher pool -> APM -> evaluation beside a random real subset and the full data.

A run directory holds config.json, teachers/, apm_state.pt (resumable), distilled.safetensors,
grid.png, evals/*.json (each finished evaluation, so a resumed run skips it), metrics.json and
accuracy.png. Every stage resumes from what is already there.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distillkit.data.images import ImageData, load_images
from distillkit.errors import UserError, validation_message
from distillkit.image.apm import APMConfig, distill
from distillkit.image.distilled import DistilledSet
from distillkit.image.evaluate import (
    EvalConfig,
    FullDataConfig,
    convergence_warnings,
    evaluate_full,
    evaluate_random,
    evaluate_set,
    fit_warning,
    gain,
)
from distillkit.image.plots import accuracy_bars, curve, image_grid
from distillkit.image.teacher import TeacherConfig, TeacherPool, train_pool
from distillkit.runs import prepare_run_dir, write_json


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = "mnist"
    root: str | None = None
    download: bool = False
    size: int | None = None
    channels: int | None = None
    zca: bool = False
    val_size: int | None = None
    train_limit: int | None = None

    def load(self, seed: int) -> ImageData:
        return load_images(
            self.dataset,
            self.root,
            seed=seed,
            val_size=self.val_size,
            size=self.size,
            channels=self.channels,
            zca=self.zca,
            train_limit=self.train_limit,
            download=self.download,
        )


class ImageRunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "quick"
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    apm: APMConfig = Field(default_factory=APMConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    full: FullDataConfig = Field(default_factory=FullDataConfig)
    hard_label_eval: bool = Field(False, description="also evaluate APM and random with hard labels + CE")


def _preset(name: str) -> dict[str, Any]:
    if name == "quick":  # minutes on a 2-core CPU for digits; chosen on validation (docs/apm.md, "Presets")
        net = {"width": 64}
        return {
            "teacher": {"net_options": net, "epochs": 100, "patience": 10},
            "apm": {
                "iterations": 150,
                "student_epochs": 300,
                "num_checkpoints": 3,
                "refresh_every": 3,
                "lr_img": 10.0,
                "lr_net": 1.0,
            },
            "eval": {"net_options": net, "runs": 3, "epochs": 1000, "lr": 0.1},
            "full": {"runs": 3, "epochs": 100, "patience": 10},
        }
    if name == "standard":  # the longest schedule affordable on a CPU in about an hour (width-128 ConvNet)
        return {
            "teacher": {"epochs": 10},
            "apm": {
                "iterations": 600,
                "student_epochs": 100,
                "num_checkpoints": 5,
                "refresh_every": 3,
                "lr_img": 10.0,
                "lr_net": 0.05,
            },
            "eval": {"runs": 3, "epochs": 500, "lr": 0.05},
            "full": {"runs": 3, "epochs": 3},
        }
    if name == "paper":  # the published settings (spec 2.4), for a GPU
        return {
            "teacher": {"epochs": 100, "num_teachers": 5, "patience": None},  # the published fixed schedule
            "apm": {
                "iterations": 2500,
                "student_epochs": 250,
                "num_checkpoints": 5,
                "refresh_every": 3,
                "lr_img": 1.0,
                "lr_net": 0.02,
            },
            "eval": {"runs": 5, "epochs": 1000, "lr": 0.02},
            "full": {"runs": 3, "epochs": 100},
        }
    raise UserError(f"unknown preset '{name}'; choose quick, standard or paper")


PRESETS = ("quick", "standard", "paper")


def merge_settings(base: dict, extra: dict) -> dict:
    """Nested settings: `extra`'s values over `base`'s, section by section."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge_settings(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(preset: str = "quick", overrides: dict[str, Any] | None = None) -> ImageRunConfig:
    """A run config from a preset plus nested overrides, e.g. {"apm": {"ipc": 50}, "data": {"dataset": "fmnist"}}."""
    overrides = overrides or {}
    base = _preset(preset)
    if "arch" in overrides.get("teacher", {}):  # the preset's ConvNet width does not carry over to other networks
        for section in ("teacher", "eval"):
            if "net_options" not in overrides.get(section, {}):
                base.get(section, {}).pop("net_options", None)
    raw = merge_settings({"preset": preset, **base}, overrides)
    try:
        cfg = ImageRunConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(validation_message(e, ImageRunConfig)) from None
    seed = cfg.seed
    cfg.teacher.seed = cfg.apm.seed = cfg.eval.seed = seed
    if "arch" not in overrides.get("eval", {}):
        cfg.eval.arch = cfg.teacher.arch
    return cfg


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cached_eval(path: Path, fn) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    start = time.perf_counter()
    result = {**fn(), "seconds": time.perf_counter() - start}
    write_json(path, result)
    return result


MIN_PROXY_FIT = 90.0  # below this the proxy checkpoints are closer to untrained networks than to students


def evaluate_all(ds: DistilledSet, data: ImageData, pool: TeacherPool, cfg: ImageRunConfig, out: Path) -> dict:
    """APM, a random real subset of the same IPC (same labels and loss, averaged over draws) and the full data."""
    ipc = cfg.apm.ipc
    label_net = pool.nets[cfg.apm.label_teacher]
    evals = out / "evals"
    rows: dict[str, dict] = {}
    label = "soft" if cfg.apm.label_mode == "teacher_logits" else "hard"
    ec = cfg.eval.model_copy(update={"label_mode": label, "loss": cfg.eval.loss if label == "soft" else "ce"})
    rows["apm"] = _cached_eval(
        evals / "apm.json", lambda: evaluate_set(ds.images, ds.labels, ds.soft_labels, data, ec, cfg.device, "eval apm")
    )
    rows["random"] = _cached_eval(evals / "random.json", lambda: evaluate_random(data, ipc, label_net, ec, cfg.device))
    if cfg.hard_label_eval and label == "soft":
        hc = ec.model_copy(update={"label_mode": "hard", "loss": "ce"})
        rows["apm_hard"] = _cached_eval(
            evals / "apm_hard.json", lambda: evaluate_set(ds.images, ds.labels, None, data, hc, cfg.device)
        )
        rows["random_hard"] = _cached_eval(
            evals / "random_hard.json", lambda: evaluate_random(data, ipc, None, hc, cfg.device)
        )
    if cfg.full.runs:
        rows["full"] = _cached_eval(evals / "full.json", lambda: evaluate_full(data, ec, cfg.full, cfg.device))
    return rows


def run_warnings(rows: dict[str, dict], teacher_meta: dict, ds: DistilledSet) -> list[str]:
    """Every reason a run's numbers may mislead: an under-trained teacher or reference, under-fit students."""
    out = convergence_warnings(teacher_meta, rows.get("full"))
    fit = ds.meta.get("proxy_fit")
    if fit is not None and fit < MIN_PROXY_FIT:
        out.append(
            f"APM's proxy students agree with the teacher on only {fit:.1f} % of the images they were trained on: "
            "the images were pushed away from barely trained networks; raise apm.student_epochs or apm.lr_net"
        )
    for name, r in rows.items():
        line = fit_warning(r)
        if line:
            out.append(f"{name}: {line}")
    return out


def run_image(cfg: ImageRunConfig, out: Path, teachers: Path | None = None) -> dict:
    """Teacher pool (trained, or loaded from `teachers`) -> APM -> evaluation; returns metrics.json's content."""
    start = time.perf_counter()
    data = cfg.data.load(cfg.seed)  # an unknown dataset or an IPC no class can fill is refused before --out is touched
    data.check_ipc(cfg.apm.ipc)
    out = prepare_run_dir(Path(out), cfg.model_dump())
    torch.manual_seed(cfg.seed)
    pool_dir = Path(teachers) if teachers else out / "teachers"
    if teachers is None:
        train_pool(data, cfg.teacher, pool_dir, cfg.device)
    pool = TeacherPool(pool_dir, cfg.device)
    teacher_seconds = time.perf_counter() - start
    set_path = out / "distilled.safetensors"
    if set_path.exists():
        ds = DistilledSet.load(set_path)
    else:
        ds = distill(data, pool, cfg.apm, out, cfg.device)
        ds.save(set_path)
    image_grid(data.denormalise(ds.images), ds.labels, data.classes, out / "grid.png")
    rows = evaluate_all(ds, data, pool, cfg, out)
    history = torch.load(out / "apm_state.pt", weights_only=False)["history"] if (out / "apm_state.pt").exists() else []
    if history:
        curve(
            [h["t"] for h in history],
            [h["discrepancy"] for h in history],
            out / "discrepancy.png",
            "image update",
            "teacher-student discrepancy",
            "APM: discrepancy the images create",
        )
    accuracy_bars(
        {k: v for k, v in rows.items()},
        out / "accuracy.png",
        f"{data.name}, IPC {cfg.apm.ipc}: test accuracy ({rows['apm']['protocol']})",
    )
    metrics = {
        "dataset": data.name,
        "ipc": cfg.apm.ipc,
        "preset": cfg.preset,
        "results": rows,
        "apm_minus_random": rows["apm"]["mean"] - rows["random"]["mean"],
        "gain_over_random": {
            name: gain(rows[name], rows[base])
            for name, base in (("apm", "random"), ("apm_hard", "random_hard"))
            if name in rows
        },
        "teacher": {k: pool.metas[0].get(k) for k in ("val_acc", "test_acc", "best_epoch", "epochs_run", "converged")},
        "proxy_fit": ds.meta.get("proxy_fit"),
        "warnings": run_warnings(rows, pool.metas[0], ds),
        "time_seconds": {
            "teachers": teacher_seconds,
            "distill": ds.meta.get("distill_seconds"),
            "total": time.perf_counter() - start,
        },
        "peak_rss_mb": _peak_rss_mb(),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def results_table(metrics: dict) -> str:
    """Markdown table of a run's results, label mode and protocol named in every row."""
    lines = [
        "| method | images | test acc. (%) | ± std over | fit on own set (%) | protocol |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in metrics["results"].items():
        over = r.get("std_over", "runs")
        fit = f"{r['train_fit']:.1f}" if "train_fit" in r else "–"
        lines.append(
            f"| {name} | {r['n_images']} | {r['mean']:.2f} ± {r['std']:.2f} | {over} | {fit} | {r['protocol']} |"
        )
    return "\n".join(lines)
