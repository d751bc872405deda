"""A server that accepts connections and never answers: how long until `dialogbench eval` fails, and how?

Runs the same one-item chat evaluation against a loopback socket that accepts and then stays silent, once
with the default `--timeout`/`--max-retries` and once with `--timeout 5 --max-retries 1`, and records the wall
time to exit, the exit code and the last line on stderr.

    .venv/bin/python bench/bench_hanging_server.py --json bench/results/hanging_server.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from distillkit.runs import write_json

BIN = Path(sys.executable).parent


def silent_server() -> tuple[int, socket.socket]:
    """A listening socket on a free port that accepts every connection and never writes a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1], srv


def attempt(port: int, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [
        str(BIN / "dialogbench"),
        "eval",
        "--model",
        "some-model",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--mode",
        "chat",
        "--tasks",
        "SF",
        "--limit",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DISTILLKIT_PROGRESS": "0"})
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    return {
        "flags": " ".join(extra) or "(defaults)",
        "seconds_to_exit": round(time.perf_counter() - start, 1),
        "exit_code": proc.returncode,
        "stderr_lines": len(lines),
        "last_line": lines[-1] if lines else "",
        "traceback": "Traceback" in proc.stderr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("bench/results/hanging_server.json"))
    ap.add_argument("--skip-defaults", action="store_true", help="only the bounded run (the default takes minutes)")
    args = ap.parse_args()
    port, srv = silent_server()
    cases = [["--timeout", "5", "--max-retries", "1"]] + ([] if args.skip_defaults else [[]])
    rows = []
    for extra in cases:
        rows.append(attempt(port, extra))
        print(rows[-1], flush=True)
    srv.close()
    write_json(args.json, {"server": "accepts connections, never answers", "runs": rows})


if __name__ == "__main__":
    main()
