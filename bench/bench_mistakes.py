"""Every mistake in the table of tests/test_mistakes.py, tried once: how many end in one clean line?

A clean refusal: exit code != 0, exactly one line on stderr starting with "error:" and holding the expected
text, no traceback, and no file in the workspace created, changed or removed.

    .venv/bin/python bench/bench_mistakes.py --json bench/results/mistakes.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_mistakes import CASES, PROGRAMS, _snapshot, _workspace  # noqa: E402

from distillkit.runs import write_json  # noqa: E402


def attempt(program: str, args: str, expected: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = _workspace(root)
        argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args.split()]
        before = _snapshot(root)
        env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", PROGRAMS[program], *argv], capture_output=True, text=True, env=env, cwd=root
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        changed = _snapshot(root) != before
    one_line = len(lines) == 1 and lines[0].startswith("error:")
    return {
        "command": f"{program} {args}",
        "exit_code": proc.returncode,
        "one_line": one_line,
        "names_the_problem": one_line and expected in lines[0],
        "traceback": "Traceback" in proc.stderr + proc.stdout,
        "files_changed": changed,
        "clean": proc.returncode != 0 and one_line and expected in lines[0] and not changed,
        "seconds": round(time.perf_counter() - start, 2),
        "line": lines[0] if lines else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("bench/results/mistakes.json"))
    args = ap.parse_args()
    rows = []
    for i, case in enumerate(CASES):
        rows.append(attempt(*case))
        print(f"[{i + 1}/{len(CASES)}] {'clean' if rows[-1]['clean'] else 'NOT CLEAN'}: {rows[-1]['command']}")
    summary = {
        "tried": len(rows),
        "clean": sum(r["clean"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "files_changed": sum(r["files_changed"] for r in rows),
        "commands": sorted({" ".join(r["command"].split()[:2]) for r in rows}),
    }
    write_json(args.json, {**summary, "cases": rows})
    print({k: v for k, v in summary.items() if k != "commands"})


if __name__ == "__main__":
    main()
