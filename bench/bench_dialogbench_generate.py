"""DialogBench generation against the local replay server: throughput, balance, and rejection shares.

    .venv/bin/python bench/bench_dialogbench_generate.py --n 160 --per-task 40 \\
        --out bench/results/dialogbench_generate.json

1. Requests per second of the request phase (generation, validation, logging; without imports and the
   final files) at concurrency 1 and 8 (the server in its own process, latency emulated by --delay
   seconds per request; a fresh response cache per run, so every request reaches the server).
2. A full generated set (all 12 tasks, --per-task each) with failures injected at fixed rates: answer-position
   and domain balance of the planned and accepted sets (chi-square p-values), and the share of generated
   instances rejected by each check; the same set with position balancing off for contrast.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from scipy.stats import chisquare

os.environ.setdefault("DISTILLKIT_PROGRESS", "0")

from distillkit.dialogbench.generate.replay import ReplayServer  # noqa: E402
from distillkit.dialogbench.generate.run import generate, resolve  # noqa: E402
from distillkit.dialogbench.schema import read_jsonl  # noqa: E402

# share of generation requests answered with each injected problem (the rest are well-formed)
FAULTS = {
    "invalid": 0.08,
    "missing_key": 0.04,
    "short": 0.04,
    "dup": 0.03,
    "near_dup": 0.03,
    "dup_options": 0.03,
    "leak": 0.03,
    503: 0.03,
    429: 0.03,
}


def _script(n: int, seed: int) -> list:
    rng = random.Random(seed)
    steps, weights = list(FAULTS) + ["ok"], list(FAULTS.values()) + [1 - sum(FAULTS.values())]
    return rng.choices(steps, weights, k=n)


SERVE = (
    "import sys, time; from distillkit.dialogbench.generate.replay import ReplayServer; "
    "s = ReplayServer(delay=float(sys.argv[1])); print(s.url, flush=True); time.sleep(3600)"
)


def throughput(concurrency: int, n: int, delay: float) -> dict:
    """Requests/s of a generation run; the server runs in its own process (no shared GIL with the client)."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(delay)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            s = resolve("bench", "SF", n, "en", base_url=url, concurrency=concurrency, judge=False)
            t = time.perf_counter()
            summ = generate(s, Path(tmp) / "out", show=False, cache_dir=Path(tmp) / "cache")
            wall = time.perf_counter() - t
    finally:
        proc.kill()
        proc.wait()
    return {
        "concurrency": concurrency,
        "delay_s": delay,
        "requests": summ["usage"]["requests"],
        "request_phase_s": summ["seconds"],
        "requests_per_s": round(summ["usage"]["requests"] / summ["seconds"], 1),
        "wall_s_with_outputs": round(wall, 2),
    }


def _p(counts: Counter, keys: list) -> float:
    return float(chisquare([counts.get(k, 0) for k in keys]).pvalue)


def balance_run(per_task: int, seed: int, position_balance: bool) -> dict:
    srv = ReplayServer(script=_script(12 * per_task * 2, seed), judge_wrong_every=12)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s = resolve(
                "bench",
                None,
                per_task,
                "en",
                base_url=srv.url,
                concurrency=8,
                seed=seed,
                position_balance=position_balance,
            )
            out = Path(tmp) / "out"
            summ = generate(s, out, show=False, cache_dir=Path(tmp) / "cache", backoff=0.01, max_backoff=0.05)
            acc = read_jsonl(out / "instances.jsonl")
            records = [json.loads(x) for x in (out / "generated.jsonl").read_text().splitlines()]
            planned = [r["job"] for r in records]
            repaired = sum(r["status"] == "valid" and bool(r["errors"]) for r in records)
            judged = len((out / "judged.jsonl").read_text().splitlines())
    finally:
        srv.stop()
    letters = list("ABCD")
    doms = s.domains
    gen_valid = summ["valid"]
    return {
        "position_balance": position_balance,
        "planned": summ["planned"],
        "valid": gen_valid,
        "accepted": summ["accepted"],
        "repaired_share": round(100 * repaired / summ["planned"], 2),
        "requests": summ["usage"]["requests"],
        "retries": summ["usage"]["retries"],
        "judged": judged,
        "planned_letters": dict(Counter(j["gold"] or "llm" for j in planned)),
        "accepted_letters": dict(sorted(Counter(i.label for i in acc).items())),
        "accepted_letters_p": _p(Counter(i.label for i in acc), letters),
        "planned_domain_counts": sorted(set(Counter(j["domain"] for j in planned).values())),
        "accepted_domains_p": _p(Counter(i.domain for i in acc), doms),
        "accepted_domain_min_max": [
            min(Counter(i.domain for i in acc).values()),
            max(Counter(i.domain for i in acc).values()),
        ],
        "rejected_share_of_planned": {
            k: round(100 * v / summ["planned"], 2) for k, v in sorted(summ["rejected_by_reason"].items())
        },
        "rejected_total_share": round(100 * summ["rejected"] / summ["planned"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=160, help="instances per throughput run")
    ap.add_argument("--delay", type=float, default=0.05, help="emulated server latency per request (s)")
    ap.add_argument("--per-task", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/dialogbench_generate.json"))
    a = ap.parse_args()
    throughput(1, 20, 0.0)  # warm-up: imports and first connections are not measured
    load_at_start = round(os.getloadavg()[0], 1)
    res = {
        "throughput": [throughput(c, a.n, d) for d in (0.0, a.delay) for c in (1, 8)],
        "balanced": balance_run(a.per_task, a.seed, True),
        "position_balance_off": balance_run(a.per_task, a.seed, False),
        "load_average_at_start": load_at_start,
        "load_average_at_end": round(os.getloadavg()[0], 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
