"""DialogBench base mode over a server vs local scoring: same predictions? how much slower?

One process runs `dialogbench.evaluate` twice in base mode on the same instances: once with the local SmolLM2
(shared-context KV cache) and once through `OpenAICompatLM.loglikelihood` against a loopback vLLM-style
`/v1/completions` server (tests/loopback_logprob_server.py) that computes the prompt log-probabilities with
that same model, one full forward pass per prompt. Writes a JSON summary.

    nice -n 10 .venv/bin/python bench/bench_dialogbench_server_base.py --out bench/results/dialogbench_server_base.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from loopback_logprob_server import LogprobServer, smollm2_scorer  # noqa: E402

from distillkit.dialogbench.evaluate import EvalSettings, evaluate  # noqa: E402
from distillkit.lm import load_local_lm  # noqa: E402
from distillkit.lm.openai_compat import OpenAICompatLM  # noqa: E402

NORMS = ("token", "sum", "char")


def run(settings: EvalSettings, lm, folder: Path) -> tuple[dict, list[dict], float, float]:
    """(metrics, item records, wall seconds, process CPU seconds) of one evaluation."""
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = evaluate(settings, folder, progress=False, lm=lm)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    records = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    return metrics, records, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prompts-per-request", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_local_lm(args.model, device="cpu", batch_size=args.batch_size)
    server = LogprobServer(smollm2_scorer(lm), model=args.model)
    remote = OpenAICompatLM(
        args.model, base_url=server.url, cache_dir=False, prompts_per_request=args.prompts_per_request
    )
    common = dict(model=args.model, mode="base", batch_size=args.batch_size)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = run(EvalSettings(**common), lm, Path(tmp) / "local")
            served = run(EvalSettings(**common, backend="openai", base_url=server.url), remote, Path(tmp) / "server")
    finally:
        server.stop()
    (m_local, r_local, wall_local, cpu_local), (m_server, r_server, wall_server, cpu_server) = local, served
    by_key = {r["key"]: r for r in r_server}
    diffs = [
        abs(r["scores"][k]["logprob"] - by_key[r["key"]]["scores"][k]["logprob"]) for r in r_local for k in r["scores"]
    ]
    res = {
        "model": args.model,
        "data": "sample (36 English instances, 12 tasks)",
        "instances": len(r_local),
        "options": len(diffs),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "prompts_per_request": args.prompts_per_request,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "identical_predictions": {n: sum(r["pred"][n] == by_key[r["key"]]["pred"][n] for r in r_local) for n in NORMS},
        "identical_token_counts": sum(
            r["scores"][k]["n_tokens"] == by_key[r["key"]]["scores"][k]["n_tokens"]
            for r in r_local
            for k in r["scores"]
        ),
        "max_abs_logprob_diff": max(diffs),
        "overall_local": m_local["overall"],
        "overall_server": m_server["overall"],
        "local_wall_s": round(wall_local, 2),
        "server_wall_s": round(wall_server, 2),
        "local_cpu_s": round(cpu_local, 2),
        "server_cpu_s": round(cpu_server, 2),
        "server_over_local_wall": round(wall_server / wall_local, 2),
        "server_usage": m_server.get("usage"),
    }
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
