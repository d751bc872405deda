"""APM beside MTT, DM, herding and random under one evaluator: accuracy by IPC and label mode, build cost,
cross-architecture drop. A thin driver over `distill image compare` that also prints the headline ratios.

    python bench/bench_image_compare.py --dataset mnist --ipcs 1 10 50 --cross-arch resnet18 vgg11 \
        --teachers bench/results/apm_accuracy/quick/mnist_ipc10/teachers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def headline(m: dict) -> list[str]:
    """APM against each other method: accuracy difference per IPC/labels, cost ratios, mean cross-arch drop."""
    rows = [r for r in m["rows"] if r["vs_random"] is not None]
    out = [
        "| IPC | labels | APM | " + " | ".join(f"APM − {o}" for o in _others(rows)) + " |",
        "|---|---|---|" + "---|" * len(_others(rows)),
    ]
    for ipc in sorted({r["ipc"] for r in rows}):
        for label in sorted({r["labels"] for r in rows}, reverse=True):
            get = {r["method"]: r["mean"] for r in rows if r["ipc"] == ipc and r["labels"] == label}
            if "apm" in get:
                diffs = " | ".join(f"{get['apm'] - get[o]:+.2f}" if o in get else "–" for o in _others(rows))
                out.append(f"| {ipc} | {label} | {get['apm']:.2f} | {diffs} |")
    costs = m["costs"]
    for ipc in sorted({r["ipc"] for r in rows}):
        apm = costs.get(f"apm_ipc{ipc}")
        for other in ("mtt", "tesla", "dm"):
            o = costs.get(f"{other}_ipc{ipc}")
            if apm and o:
                out.append(
                    f"- IPC {ipc}: APM / {other} peak memory {apm['peak_mb'] / max(o['peak_mb'], 1e-9):.2f}, "
                    f"build time {apm['seconds'] / o['seconds']:.2f}"
                )
    drops: dict[str, list[float]] = {}
    for d in m["cross_arch_drop"]:
        drops.setdefault(d["method"], []).append(d["drop"])
    for method, ds in drops.items():
        out.append(f"- mean cross-architecture drop of {method}: {sum(ds) / len(ds):.2f} points over {len(ds)} cells")
    return out


def _others(rows: list[dict]) -> list[str]:
    return [m for m in dict.fromkeys(r["method"] for r in rows) if m != "apm"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--methods", nargs="+", default=["apm", "mtt", "dm", "herding", "random"])
    p.add_argument("--ipcs", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--cross-arch", nargs="*", default=["resnet18", "vgg11"])
    p.add_argument("--preset", default="quick")
    p.add_argument("--teachers", type=Path, default=None)
    p.add_argument("--experts", type=Path, default=None)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. mtt.iterations=300")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="JSON summary (default bench/results/image_compare_<dataset>_<preset>.json)",
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    from distillkit.cli.image import parse_sets
    from distillkit.image.compare import make_compare_config, run_compare

    overrides = parse_sets(args.set)
    overrides.setdefault("data", {})["dataset"] = args.dataset
    overrides.update(methods=args.methods, ipcs=args.ipcs, cross_archs=args.cross_arch)
    out = args.out or Path("bench/results/image_compare") / f"{args.dataset}_{args.preset}"
    m = run_compare(make_compare_config(args.preset, overrides), out, args.teachers, args.experts)
    print((out / "results.md").read_text())
    print("\n".join(headline(m)))
    summary = args.summary or Path("bench/results") / f"image_compare_{args.dataset}_{args.preset}.json"
    summary.write_text(json.dumps({k: m[k] for k in ("rows", "costs", "full_data", "cross_arch_drop")}, indent=2))


if __name__ == "__main__":
    main()
