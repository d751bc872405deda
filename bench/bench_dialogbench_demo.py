"""The DialogBench demo section (SmolLM2 in base and chat mode on the 36 sample instances): time and results.

Runs `run_demo(..., only=["distillkit.dialogbench.demo"])` in a fresh folder and records its wall and process
CPU time with the two evaluations' metrics.

    .venv/bin/python bench/bench_dialogbench_demo.py --out bench/results/dialogbench_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from distillkit.demo import run_demo

MODULE = "distillkit.dialogbench.demo"


def mode_summary(run: Path) -> dict:
    """What the docs cite from one evaluation's metrics.json."""
    m = json.loads((run / "metrics.json").read_text())
    keep = ("mode", "headline", "overall", "seconds", "n_items", "letters")
    out = {k: m[k] for k in keep}
    out |= {k: v for k, v in m.items() if k.startswith("overall_") and k != "overall_complete"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON summary to write")
    args = ap.parse_args()
    load_at_start = round(os.getloadavg()[0], 1)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), os.times()
        run_demo(Path(tmp), only=[MODULE])
        wall, c1 = time.perf_counter() - t0, os.times()
        modes = {mode: mode_summary(Path(tmp) / "dialogbench" / f"smollm2-{mode}") for mode in ("base", "chat")}
    res = {
        "module": MODULE,
        "wall_s": round(wall, 1),
        "user_cpu_s": round(c1.user - c0.user, 1),
        "system_cpu_s": round(c1.system - c0.system, 1),
        "load_average_at_start": load_at_start,
        "load_average_at_end": round(os.getloadavg()[0], 1),
        **modes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
