"""How far APM's image updates move the images: range, distance from the initial images, teacher confidence.

Reads finished run folders of `bench_apm_vs_random.py` (or `distill image run`) and, for each, compares the
distilled images with the real images they started from: pixel range against the real training images'
range, relative L2 distance from the initial images, the teacher's cross-entropy, accuracy and top-1 minus
top-2 logit margin on them, and the APM loss terms over the first and last 50 updates. Beside the accuracies
in `apm_vs_random_digits.json` it shows what the schedules that lower accuracy did to the images.

    python bench/bench_apm_drift.py runs/bench_apm_vs_random/digits_{quick,published,published_lr_img1}_ipc1 \
        --out bench/results/apm_drift_digits.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F


def _window(history: list[dict]) -> dict:
    """Mean APM loss terms over some updates, and the proxies' fit at the refreshes among them."""
    fits = [h["proxy_fit"] for h in history if "proxy_fit" in h]
    mean = {k: sum(h[k] for h in history) / len(history) for k in ("discrepancy", "ce")}
    return {**mean, "proxy_fit": sum(fits) / len(fits) if fits else None}


def drift(run_dir: Path) -> dict:
    """The image statistics of one finished run folder."""
    from safetensors.torch import load_file

    from distillkit.image.initial import init_images
    from distillkit.image.pipeline import ImageRunConfig
    from distillkit.image.teacher import TeacherPool
    from distillkit.image.train import predict
    from distillkit.runs import read_json
    from distillkit.settings import read_config_file

    cfg = ImageRunConfig.model_validate(read_config_file(run_dir / "config.json"))
    data = cfg.data.load(cfg.seed)
    x0, y = init_images(data, cfg.apm)
    x = load_file(run_dir / "distilled.safetensors")["images"]
    given = read_json(run_dir / "config.json").get("teacher_pool")  # a pool passed in, or the run's own
    pool = Path(given["path"]) if given else run_dir / "teachers"
    teacher = TeacherPool(pool / "pool.json").nets[cfg.apm.label_teacher]
    history = torch.load(run_dir / "apm_state.pt", weights_only=False)["history"]

    def scored(images: torch.Tensor) -> dict:
        logits = predict(teacher, images)
        top2 = logits.topk(2, dim=1).values
        return {
            "teacher_ce": float(F.cross_entropy(logits, y)),
            "teacher_margin": float((top2[:, 0] - top2[:, 1]).mean()),
            "teacher_acc": float((logits.argmax(1) == y).float().mean() * 100),
            "min": float(images.min()),
            "max": float(images.max()),
        }

    per_image = (x - x0).flatten(1).norm(dim=1) / x0.flatten(1).norm(dim=1)
    return {
        "run": run_dir.name,
        "ipc": cfg.apm.ipc,
        "iterations": cfg.apm.iterations,
        "student_epochs": cfg.apm.student_epochs,
        "num_checkpoints": cfg.apm.num_checkpoints,
        "lr_img": cfg.apm.lr_img,
        "real_range": [float(data.x_train.min()), float(data.x_train.max())],
        "initial": scored(x0),
        "distilled": scored(x),
        "relative_l2_from_initial": float(per_image.mean()),
        "outside_real_range": float(((x < data.x_train.min()) | (x > data.x_train.max())).float().mean() * 100),
        "loss_first": _window(history[:50]),
        "loss_last": _window(history[-50:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished APM run folders")
    p.add_argument("--out", type=Path, default=Path("bench/results/apm_drift_digits.json"))
    args = p.parse_args()
    rows = [drift(r) for r in args.runs]
    for r in rows:
        print(json.dumps({k: r[k] for k in ("run", "relative_l2_from_initial", "outside_real_range")}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
