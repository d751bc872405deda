"""APM's parallel variant: G groups distilled independently and merged, against one run at the same total IPC.

Both sets come from the same teacher pool and are scored by the same evaluator (`evaluate_set`), once
with the teacher's soft labels and once with hard labels + CE. The groups run one after another here,
so "parallel wall" is the slowest group: the time G processes (torchrun) would take. Every run directory
and evaluation is kept under --out, so an interrupted benchmark resumes.

    python bench/bench_parallel_groups.py --teachers runs/teachers_mnist --dataset mnist --ipc 10 --groups 2 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--groups", nargs="+", type=int, default=[2, 5], help="group counts G to compare")
    p.add_argument("--split", default="ipc", choices=["ipc", "classes"])
    p.add_argument("--preset", default="quick")
    p.add_argument(
        "--teachers",
        type=Path,
        default=None,
        help="trained teacher pool to reuse (default: train one with the preset into OUT/teachers)",
    )
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. apm.iterations=300 eval.runs=5")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("bench/results/parallel_groups"))
    p.add_argument("--json", type=Path, default=Path("bench/results/parallel_groups.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    from distillkit.cli.image import parse_sets
    from distillkit.image.apm import distill
    from distillkit.image.distilled import DistilledSet
    from distillkit.image.evaluate import evaluate_set
    from distillkit.image.parallel import distill_groups
    from distillkit.image.pipeline import make_config
    from distillkit.image.teacher import TeacherPool, train_pool
    from distillkit.runs import Run

    overrides = parse_sets(args.set)
    overrides.setdefault("data", {})["dataset"] = args.dataset
    overrides.setdefault("apm", {})["ipc"] = args.ipc
    cfg = make_config(args.preset, {**overrides, "device": args.device})
    data = cfg.data.load(cfg.seed)
    root = args.out / args.preset / f"{args.dataset}_ipc{args.ipc}"
    bench_run = Run(root, cfg.model_dump(), device=args.device)  # every evaluation below is computed once
    pool_dir = args.teachers or args.out / args.preset / f"{args.dataset}_teachers"
    if args.teachers is None:
        train_pool(data, cfg.teacher, pool_dir, args.device)
    pool = TeacherPool(pool_dir, args.device)
    soft_cfg = cfg.eval.model_copy(update={"label_mode": "soft"})
    hard_cfg = cfg.eval.model_copy(update={"label_mode": "hard", "loss": "ce"})

    def scores(ds: DistilledSet, run_dir: Path) -> dict:
        return {
            name: bench_run.cached(
                f"{run_dir.relative_to(root)}/eval_{name}.json",
                lambda ec=ec, name=name: evaluate_set(
                    ds.images, ds.labels, ds.soft_labels, data, ec, args.device, f"eval {run_dir.name} {name}"
                ),
                timed=True,
            )
            for name, ec in (("soft", soft_cfg), ("hard", hard_cfg))
        }

    rows = []
    single_dir = root / "single"
    start = time.perf_counter()
    if (single_dir / "distilled.safetensors").exists():
        single = DistilledSet.load(single_dir / "distilled.safetensors")
    else:
        single = distill(data, pool, cfg.apm, single_dir, args.device)
        single.save(single_dir / "distilled.safetensors")
    seconds = single.meta["distill_seconds"]
    rows.append(
        {
            "setting": "one run",
            "groups": 1,
            "split": None,
            "n_images": len(single.labels),
            "group_seconds": [seconds],
            "total_seconds": seconds,
            "parallel_wall_seconds": seconds,
            "this_call_seconds": time.perf_counter() - start,
            **scores(single, single_dir),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    for g in args.groups:
        run_dir = root / f"groups{g}_{args.split}"
        start = time.perf_counter()
        merged = distill_groups(data, pool, cfg.apm, run_dir, g, args.split, args.device)
        per_group = [x["distill_seconds"] for x in merged.meta["groups"]]
        rows.append(
            {
                "setting": f"{g} groups merged",
                "groups": g,
                "split": args.split,
                "n_images": len(merged.labels),
                "group_seconds": per_group,
                "total_seconds": sum(per_group),
                "parallel_wall_seconds": max(per_group),
                "this_call_seconds": time.perf_counter() - start,
                **scores(merged, run_dir),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "dataset": args.dataset,
        "ipc": args.ipc,
        "preset": args.preset,
        "split": args.split,
        "teachers": str(pool_dir),
        "apm": cfg.apm.model_dump(),
        "protocol": {"soft": soft_cfg.describe(), "hard": hard_cfg.describe()},
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(
        f"\n{args.dataset}, total IPC {args.ipc}, preset {args.preset}; soft: {soft_cfg.describe()}; "
        f"hard: {hard_cfg.describe()}\n"
    )
    print("| set | images | soft labels (%) | hard labels (%) | distill time per group (s) | parallel wall (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{s:.1f}" for s in r["group_seconds"])
        print(
            f"| {r['setting']} | {r['n_images']} | {r['soft']['mean']:.2f} ± {r['soft']['std']:.2f} | "
            f"{r['hard']['mean']:.2f} ± {r['hard']['std']:.2f} | {per} | {r['parallel_wall_seconds']:.1f} |"
        )
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
