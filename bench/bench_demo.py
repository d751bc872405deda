"""`make demo`'s job timed as a user runs it: `distill demo` in a fresh folder, wall time, per-section times.

Runs the installed `distill demo --out <fresh folder>` (what `make demo` runs after its install step) and
records the wall time, each section's time from the report it writes, the machine's CPU count and its load
average before and after (a busy machine makes every number longer).

    .venv/bin/python bench/bench_demo.py --out bench/results/demo_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = re.compile(r"^## (?P<title>.+?)\n.*?^_section time: (?P<seconds>\d+) s_", re.S | re.M)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON summary to write")
    args = ap.parse_args()
    distill = Path(sys.executable).with_name("distill")
    load_at_start = round(os.getloadavg()[0], 1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([str(distill), "demo", "--out", tmp], check=True)
        wall = time.perf_counter() - t0
        report = (Path(tmp) / "report.md").read_text()
    sections = {m["title"]: int(m["seconds"]) for m in SECTION.finditer(report)}
    summary = {
        "command": "distill demo --out <fresh folder>",
        "wall_seconds": wall,
        "sections_seconds": sections,
        "cpu_count": os.cpu_count(),
        "load_at_start": load_at_start,
        "load_at_end": round(os.getloadavg()[0], 1),
    }
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
