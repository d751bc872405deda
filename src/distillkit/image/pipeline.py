"""`distill image run`: teacher pool -> APM -> evaluation beside a random real subset and the full data.

A run directory holds config.json, teachers/, apm_state.pt (resumable), distilled.safetensors,
grid.png, evals/*.json (each finished evaluation, so a resumed run skips it), metrics.json and
accuracy.png. Every stage resumes from what is already there.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from distillkit.data.config import DataConfig
from distillkit.data.images import ImageData
from distillkit.devices import DEVICE_HELP, resolve_device, tf32
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
from distillkit.image.pools import pool_identity
from distillkit.image.presets import PAPER, image_preset, with_paper_row
from distillkit.image.teacher import TEACHER_POOL, TeacherConfig, TeacherPool, train_pool
from distillkit.overrides import MISSING, get_dotted
from distillkit.plots import accuracy_bars, curve, image_grid
from distillkit.report import write_report_html
from distillkit.runs import Run
from distillkit.settings import merge_settings, preset_names, validate

__all__ = ["DataConfig", "ImageRunConfig", "make_config", "run_image"]


class ImageRunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: str = "quick"
    paper_row: str | None = Field(None, description="the APM Table A9 row a paper preset used")
    seed: int = 0
    device: str = Field("auto", description=DEVICE_HELP)
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    apm: APMConfig = Field(default_factory=APMConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    full: FullDataConfig = Field(default_factory=FullDataConfig)
    hard_label_eval: bool = Field(False, description="also evaluate APM and random with hard labels + CE")
    tf32: bool = Field(False, description="TF32 matmuls and convolutions on CUDA (faster, ~1e-3 relative error)")


PRESETS = tuple(preset_names("image"))


def preset_settings(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings for a run; `paper` adds the Table A9 row of the run's dataset and IPC."""
    base = image_preset(preset)
    if preset == PAPER:
        dataset = get_dotted(overrides, "data.dataset")
        ipc = get_dotted(overrides, "apm.ipc")
        dataset = DataConfig().dataset if dataset is MISSING else str(dataset)
        ipc = APMConfig().ipc if not isinstance(ipc, int) else ipc
        base = with_paper_row(base, dataset, ipc)
    return base


def make_config(preset: str = "quick", overrides: dict[str, Any] | None = None) -> ImageRunConfig:
    """A run config from a preset plus nested overrides, e.g. {"apm": {"ipc": 50}, "data": {"dataset": "fmnist"}}."""
    overrides = overrides or {}
    base = preset_settings(preset, overrides)
    if "arch" in overrides.get("teacher", {}):  # the preset's ConvNet width does not carry over to other networks
        for section in ("teacher", "eval"):
            if "net_options" not in overrides.get(section, {}):
                base.get(section, {}).pop("net_options", None)
    cfg = validate(ImageRunConfig, merge_settings({"preset": preset, **base}, overrides))
    seed = cfg.seed
    cfg.teacher.seed = cfg.apm.seed = cfg.eval.seed = seed
    if "arch" not in overrides.get("eval", {}):
        cfg.eval.arch = cfg.teacher.arch
    return cfg


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MIN_PROXY_FIT = 90.0  # below this the proxy checkpoints are closer to untrained networks than to students


def evaluate_all(ds: DistilledSet, data: ImageData, pool: TeacherPool, cfg: ImageRunConfig, run: Run) -> dict:
    """APM, a random real subset of the same IPC (same labels and loss, averaged over draws) and the full data."""
    ipc, device = cfg.apm.ipc, str(resolve_device(cfg.device))
    label_net = pool.nets[cfg.apm.label_teacher]
    rows: dict[str, dict] = {}

    def cached_eval(name: str, fn) -> dict:
        return run.cached(f"evals/{name}.json", fn, timed=True)

    label = "soft" if cfg.apm.label_mode == "teacher_logits" else "hard"
    ec = cfg.eval.model_copy(update={"label_mode": label, "loss": cfg.eval.loss if label == "soft" else "ce"})
    rows["apm"] = cached_eval(
        "apm", lambda: evaluate_set(ds.images, ds.labels, ds.soft_labels, data, ec, device, "eval apm")
    )
    rows["random"] = cached_eval("random", lambda: evaluate_random(data, ipc, label_net, ec, device))
    if cfg.hard_label_eval and label == "soft":
        hc = ec.model_copy(update={"label_mode": "hard", "loss": "ce"})
        rows["apm_hard"] = cached_eval("apm_hard", lambda: evaluate_set(ds.images, ds.labels, None, data, hc, device))
        rows["random_hard"] = cached_eval("random_hard", lambda: evaluate_random(data, ipc, None, hc, device))
    if cfg.full.runs:
        rows["full"] = cached_eval("full", lambda: evaluate_full(data, ec, cfg.full, device))
    return rows


def label_agreement(ds: DistilledSet) -> float | None:
    """Percentage of the set's images whose teacher logits put them in their own class (None without logits)."""
    if ds.soft_labels is None:
        return None
    return float((ds.soft_labels.argmax(1) == ds.labels).float().mean() * 100)


def run_warnings(rows: dict[str, dict], teacher_meta: dict, ds: DistilledSet) -> list[str]:
    """Every reason a run's numbers may mislead: an under-trained teacher or reference, under-fit students,
    images pushed across the teacher's decision boundary."""
    out = convergence_warnings(teacher_meta, rows.get("full"))
    agreement = label_agreement(ds)
    if agreement is not None and agreement < 100:
        crossed = round(len(ds.labels) * (100 - agreement) / 100)
        out.append(
            f"the teacher puts {crossed} of the {len(ds.labels)} distilled images in another class than their "
            "label: the image updates pushed them across its decision boundary, so their hard labels contradict "
            "the teacher and their soft labels teach another class; lower apm.lr_img or raise apm.alpha_ce "
            "(choose them on validation: distill image tune)"
        )
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
    with tf32(cfg.tf32):
        return _run_image(cfg, Path(out), teachers)


def _run_image(cfg: ImageRunConfig, out: Path, teachers: Path | None) -> dict:
    start = time.perf_counter()
    device = str(resolve_device(cfg.device))
    data = cfg.data.load(cfg.seed)  # an unknown dataset or an IPC no class can fill is refused before --out is touched
    data.check_ipc(cfg.apm.ipc)
    config = cfg.model_dump() | {"data_sha256": data.digest()}  # data files changed since: refused on resume
    if teachers is not None:  # a pool from elsewhere: the run records what it holds, not only where it is
        config["teacher_pool"] = pool_identity(teachers, TEACHER_POOL)
    run = Run(out, config, device=device)
    torch.manual_seed(cfg.seed)
    pool_dir = Path(teachers) if teachers else out / "teachers"
    if teachers is None:
        train_pool(data, cfg.teacher, pool_dir, device)
    pool = TeacherPool(pool_dir, device)
    teacher_seconds = time.perf_counter() - start
    set_path = out / "distilled.safetensors"
    if set_path.exists():
        ds = DistilledSet.load(set_path)
    else:
        ds = distill(data, pool, cfg.apm, out, device)
        ds.save(set_path)
    image_grid(data.denormalise(ds.images), ds.labels, data.classes, out / "grid.png")
    rows = evaluate_all(ds, data, pool, cfg, run)
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
        "label_agreement": label_agreement(ds),
        "warnings": run_warnings(rows, pool.metas[0], ds),
        "time_seconds": {
            "teachers": teacher_seconds,
            "distill": ds.meta.get("distill_seconds"),
            "total": time.perf_counter() - start,
        },
        "peak_rss_mb": _peak_rss_mb(),
    }
    metrics = run.write_metrics(metrics)
    write_report_html(out)
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
