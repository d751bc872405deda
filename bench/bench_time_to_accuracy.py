"""Time to equal accuracy: APM against MTT on the same data, teacher pool, experts and evaluator.

Each method runs its schedule once (the `compare` preset's, or longer through --set). Every --every-apm /
--every-mtt iterations the images are copied out with the method's own distillation seconds so far
(`state.seconds`: the loop's work, without the copying or checkpoint writes). Each snapshot, and the shared
initial images (both methods start from the same seeded real images), is trained on by the comparison's
evaluator with teacher soft labels (L1) and with hard labels (CE). Both runs go first, then every
evaluation, so the timed part can run alone on the machine (`--distill-only`, then again without it).

For each label mode the target is the lower of the two methods' best snapshot accuracies on the VALIDATION
split (a level both reach); a method's time to it is the seconds of its first snapshot at or above it on
validation, and the test accuracy of that snapshot is reported. The test split chooses nothing. The
ratio APM / MTT below 1 means APM gets there sooner; the paper claims at most 1/5. Snapshots and
evaluations are cached in the output directory, so a killed run resumes.

    python bench/bench_time_to_accuracy.py --dataset mnist --ipc 10 \
        --teachers bench/results/apm_accuracy/quick/mnist_ipc10/teachers \
        --experts bench/results/image_compare/mnist_quick/experts
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def snapshots(cmp, method: str, ipc: int, every: int, out: Path) -> list[dict]:
    """Run `method` once, keeping its images every `every` iterations; cached in out/snapshots."""
    from distillkit.image.apm import distill
    from distillkit.image.mtt import distill_mtt

    index = out / "snapshots" / f"{method}_ipc{ipc}.json"
    if index.exists():
        return json.loads(index.read_text())
    kept: list[dict] = []

    def keep(t: int, state) -> None:
        if (t + 1) % every == 0:
            path = out / "snapshots" / f"{method}_ipc{ipc}_t{t + 1}.pt"
            torch.save(state.images.detach().cpu().clone(), path)
            kept.append({"t": t + 1, "seconds": state.seconds, "path": str(path)})

    index.parent.mkdir(parents=True, exist_ok=True)
    cfg = cmp.cfg
    if method == "apm":
        distill(cmp.data, cmp.pool, cfg.apm.model_copy(update={"ipc": ipc}), None, cfg.device, keep)
    else:
        mcfg = cfg.mtt.model_copy(update={"ipc": ipc, "gradient": "unrolled"})
        distill_mtt(cmp.data, cmp.experts(), mcfg, None, cfg.device, cmp.label_net, keep)
    index.write_text(json.dumps(kept, indent=2))
    return kept


def curve(cmp, method: str, ipc: int, snaps: list[dict], labels: list[str]) -> list[dict]:
    """Accuracy of every snapshot (t = 0 is the shared initial set) under each label mode."""
    from distillkit.image.apm import APMConfig
    from distillkit.image.distilled import DistilledSet
    from distillkit.image.initial import init_images
    from distillkit.image.train import predict

    init, hard = init_images(cmp.data, APMConfig(ipc=ipc, init=cmp.cfg.apm.init, seed=cmp.cfg.apm.seed))
    points = [{"t": 0, "seconds": 0.0, "images": init}]
    points += [{"t": s["t"], "seconds": s["seconds"], "images": torch.load(s["path"])} for s in snaps]
    rows = []
    for p in points:
        ds = DistilledSet(p["images"], hard, predict(cmp.label_net, p["images"]))
        name = "init" if p["t"] == 0 else f"{method}_t{p['t']}"
        for label in labels:
            r = cmp.evaluate(name, ds, ipc, cmp.cfg.eval.arch, label)
            v = cmp.evaluate(name, ds, ipc, cmp.cfg.eval.arch, label, split="val")
            rows.append(
                {
                    "method": method,
                    "t": p["t"],
                    "seconds": p["seconds"],
                    "labels": label,
                    "mean": r["mean"],
                    "std": r["std"],
                    "val_mean": v["mean"],
                }
            )
    return rows


def time_to(rows: list[dict], method: str, label: str, target: float) -> dict | None:
    """The first snapshot of `method` whose VALIDATION accuracy reaches `target` (its test accuracy is reported)."""
    hits = [r for r in rows if r["method"] == method and r["labels"] == label and r["val_mean"] >= target]
    return min(hits, key=lambda r: r["seconds"]) if hits else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--preset", default="quick")
    p.add_argument("--teachers", type=Path, default=None)
    p.add_argument("--experts", type=Path, default=None)
    p.add_argument("--every-apm", type=int, default=30)
    p.add_argument("--every-mtt", type=int, default=20)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. mtt.iterations=300")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--distill-only", action="store_true", help="take the snapshots, evaluate later")
    args = p.parse_args()
    torch.set_num_threads(2)
    from distillkit.cli.image import parse_sets
    from distillkit.image.compare import Comparison, make_compare_config
    from distillkit.plots import accuracy_lines

    overrides = parse_sets(args.set)
    overrides.setdefault("data", {})["dataset"] = args.dataset
    overrides.update(methods=["apm", "mtt"], ipcs=[args.ipc], cross_archs=[])
    out = args.out or Path("bench/results/time_to_accuracy") / f"{args.dataset}_{args.preset}_ipc{args.ipc}"
    cmp = Comparison(make_compare_config(args.preset, overrides), out, args.teachers, args.experts)
    if (cmp.cfg.apm.seed, cmp.cfg.apm.init) != (cmp.cfg.mtt.seed, cmp.cfg.mtt.init):
        raise SystemExit("error: apm and mtt need the same seed and init, so both start from the same images")
    labels = cmp.cfg.label_modes
    # both runs first, then every evaluation: `--distill-only` lets the timed part run on a quiet machine
    snaps = {
        m: snapshots(cmp, m, args.ipc, every, out) for m, every in (("apm", args.every_apm), ("mtt", args.every_mtt))
    }
    if args.distill_only:
        return
    rows = [row for m, s in snaps.items() for row in curve(cmp, m, args.ipc, s, labels)]
    summary = []
    for label in labels:
        # the target is chosen on the validation split; the test split only reports the snapshots it picks
        best = {
            m: max(r["val_mean"] for r in rows if r["method"] == m and r["labels"] == label) for m in ("apm", "mtt")
        }
        target = min(best.values())
        hit = {m: time_to(rows, m, label, target) for m in ("apm", "mtt")}
        t_apm, t_mtt = (hit[m]["seconds"] if hit[m] else None for m in ("apm", "mtt"))
        ratio = t_apm / t_mtt if t_apm is not None and t_mtt else None
        summary.append(
            {
                "labels": label,
                "target_val": target,
                "best_val": best,
                "apm_seconds": t_apm,
                "mtt_seconds": t_mtt,
                "test_at_hit": {m: hit[m]["mean"] if hit[m] else None for m in ("apm", "mtt")},
                "ratio_apm_over_mtt": ratio,
            }
        )
        print(
            f"{label} labels: validation target {target:.2f} % (best APM {best['apm']:.2f}, MTT {best['mtt']:.2f}); "
            f"APM reaches it in {t_apm:.0f} s, MTT in {t_mtt:.0f} s; ratio "
            + (f"{ratio:.2f}" if ratio is not None else "undefined (the initial set reaches it)")
        )
    accuracy_lines(
        rows,
        out / "accuracy_vs_seconds.png",
        f"{args.dataset} IPC {args.ipc}: test accuracy against distillation time",
        x="seconds",
        xlabel="distillation seconds",
        log_x=False,
    )
    result = {
        "dataset": args.dataset,
        "ipc": args.ipc,
        "preset": args.preset,
        "curve": rows,
        "summary": summary,
        "apm_iterations": cmp.cfg.apm.iterations,
        "mtt_iterations": cmp.cfg.mtt.iterations,
        "protocol": cmp.cfg.eval.model_dump(),
    }
    path = Path("bench/results") / f"time_to_accuracy_{out.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path} and {out / 'accuracy_vs_seconds.png'}")


if __name__ == "__main__":
    main()
