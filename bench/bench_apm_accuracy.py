"""APM vs a random real subset vs the full data, one protocol, over datasets and IPCs.

One teacher pool per dataset is trained once and shared by every IPC (as APM intends). Every run
directory is kept under --out, so an interrupted benchmark resumes where it stopped.

    python bench/bench_apm_accuracy.py --datasets mnist fashion_mnist --ipcs 1 10 50 --preset quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    p.add_argument("--ipcs", nargs="+", type=int, default=[1, 10, 50])
    p.add_argument("--preset", default="quick")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. apm.iterations=300")
    p.add_argument("--out", type=Path, default=Path("bench/results/apm_accuracy"))
    p.add_argument("--teachers", nargs="*", default=[], help="DATASET=DIR: reuse a trained teacher pool")
    args = p.parse_args()
    torch.set_num_threads(2)
    from distillkit.cli.image import parse_sets
    from distillkit.image.pipeline import make_config, run_image

    rows = []
    pools = dict(item.split("=", 1) for item in args.teachers)
    for dataset in args.datasets:
        pool = Path(pools[dataset]) if dataset in pools else None
        for ipc in args.ipcs:
            overrides = {**parse_sets(args.set)}
            overrides.setdefault("data", {})["dataset"] = dataset
            overrides.setdefault("apm", {})["ipc"] = ipc
            if rows and rows[-1]["dataset"] == dataset:  # the full-data reference does not depend on IPC
                overrides.setdefault("full", {})["runs"] = 0
            run_dir = args.out / args.preset / f"{dataset}_ipc{ipc}"
            start = time.perf_counter()
            m = run_image(make_config(args.preset, overrides), run_dir, pool)
            pool = pool or run_dir / "teachers"
            rows.append(
                {
                    "dataset": dataset,
                    "ipc": ipc,
                    "preset": args.preset,
                    "seconds": time.perf_counter() - start,
                    **{
                        k: {"mean": v["mean"], "std": v["std"], "runs": len(v["runs"]), "protocol": v["protocol"]}
                        for k, v in m["results"].items()
                    },
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = args.out / f"{args.preset}.json"
    out.write_text(json.dumps(rows, indent=2))
    print("| dataset | IPC | APM | random real | full data | APM - random |")
    print("|---|---|---|---|---|---|")
    full = {r["dataset"]: r["full"] for r in rows if "full" in r}
    for r in rows:
        f = full.get(r["dataset"])
        print(
            f"| {r['dataset']} | {r['ipc']} | {r['apm']['mean']:.2f} ± {r['apm']['std']:.2f} | "
            f"{r['random']['mean']:.2f} ± {r['random']['std']:.2f} | "
            f"{f['mean']:.2f} ± {f['std']:.2f} | {r['apm']['mean'] - r['random']['mean']:+.2f} |"
            if f
            else ""
        )


if __name__ == "__main__":
    main()
