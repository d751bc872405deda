"""`distill image compare` on two torchrun processes against one process, on the same CPU cores.

Three settings, run in interleaved rounds on fresh run directories, each training its own teacher pool:
  one process, 2 threads  - today's single process using both cores (the timing baseline);
  two processes, 1 thread each (torchrun, gloo) - the same two cores, shared as ranks;
  one process, 1 thread   - the reference the two ranks must match bit for bit (thread counts change float sums).
Reported: the median wall time of each setting (process start included), the ratios of each one-process setting
over two processes, and whether each setting's tables (metrics.json and results.csv, timings and memory left
out) equal the 1-thread reference. The machine's load average is recorded: other work on it skews the times.

    python bench/bench_compare_ranks.py --rounds 2      # JSON: bench/results/compare_ranks.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {  # name -> (processes, threads per process)
    "one process, 2 threads": (1, 2),
    "two processes, 1 thread each": (2, 1),
    "one process, 1 thread": (1, 1),
}
REFERENCE = "one process, 1 thread"
TIMING = {"seconds", "peak_mb"}
CONFIG = {
    "data.val_size": 500,
    "teacher.num_teachers": 2,
    "teacher.epochs": 5,
    "teacher.patience": "null",
    "dm.iterations": 50,
    "eval.runs": 2,
    "eval.epochs": 60,
    "eval.random_draws": 2,
    "full.runs": 1,
    "full.epochs": 5,
}
COMPARE = [
    *("image", "compare", "--dataset", "digits", "--methods", "dm,herding,kcenter,random", "--ipc", "1,10"),
    *("--cross-arch", "mlp", "--device", "cpu"),
    *(arg for key, value in CONFIG.items() for arg in ("--set", f"{key}={value}")),
]


def run(processes: int, threads: int, out: Path) -> float:
    """Wall seconds of one `distill image compare` into `out`, process start included."""
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    start = time.perf_counter()
    command = [*launcher, "-m", "distillkit.cli.distill", *COMPARE, "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"compare failed ({processes} x {threads}):\n{proc.stderr[-3000:]}")
    return seconds


def tables(out: Path) -> dict:
    """metrics.json and results.csv without what differs between any two runs (timings, memory, provenance)."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("provenance")
    for row in metrics["rows"]:
        row.pop("seconds"), row.pop("peak_mb")
    for cost in metrics["costs"].values():
        cost.pop("seconds"), cost.pop("peak_mb")
    (metrics["full_data"] or {}).pop("seconds", None)
    rows = csv.DictReader(io.StringIO((out / "results.csv").read_text()))
    return {"metrics": metrics, "csv": [{k: v for k, v in r.items() if k not in TIMING} for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three settings")
    p.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "compare_ranks", help="run directories (replaced)"
    )
    p.add_argument("--json", type=Path, default=Path("bench/results/compare_ranks.json"))
    args = p.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in SETTINGS}
    identical: dict[str, list[bool]] = {name: [] for name in SETTINGS}
    load_before = os.getloadavg()
    reference = None
    for r in range(args.rounds):
        outs = {}
        for name, (processes, threads) in SETTINGS.items():
            out = args.out / f"round{r}" / name.replace(" ", "_").replace(",", "")
            shutil.rmtree(out, ignore_errors=True)
            walls[name].append(run(processes, threads, out))
            outs[name] = out
            print(f"round {r}: {name}: {walls[name][-1]:.1f} s", flush=True)
        reference = reference or tables(outs[REFERENCE])
        for name, out in outs.items():
            identical[name].append(tables(out) == reference)
    median = {name: statistics.median(w) for name, w in walls.items()}
    result = {
        "command": "distill " + " ".join(COMPARE),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rounds": args.rounds,
        "settings": {
            name: {
                "processes": processes,
                "threads_per_process": threads,
                "wall_seconds": walls[name],
                "median_seconds": median[name],
                "tables_equal_reference": all(identical[name]),
            }
            for name, (processes, threads) in SETTINGS.items()
        },
        "reference": REFERENCE,
        "ratio_one_process_over_two": median["one process, 2 threads"] / median["two processes, 1 thread each"],
        "ratio_one_thread_over_two": median["one process, 1 thread"] / median["two processes, 1 thread each"],
        "table_rows": len(reference["metrics"]["rows"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=2))


if __name__ == "__main__":
    main()
