"""Kill -9 at random points, then rerun the same command: does every run end with the same results?

Each scenario is one small real command (teacher pool + APM + evaluation on digits, MTT/DM/herding through
`compare`, DiLM stages 1 and 2, DialogBench base scoring). It first runs uninterrupted to give the reference;
then each trial starts it in a fresh folder, sends SIGKILL after a seeded random share of the reference wall
time, and reruns the same command until it exits 0. The trial passes when the final results equal the
reference's (metrics.json without timings and provenance, plus the result files named per scenario).

    .venv/bin/python bench/bench_kill_resume.py --trials 4 --out runs/bench_kill_resume \
        --json bench/results/kill_resume.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from distillkit.runs import write_json
from distillkit.text.api import tiny_overrides

BIN = Path(sys.executable).parent
VOLATILE = ("seconds", "time", "provenance", "created", "finished", "wall", "usage", "rss", "peak", "memory")

IMAGE_FAST = [
    "teacher.epochs=20",
    'teacher.net_options={"width": 16, "depth": 2}',
    'eval.net_options={"width": 16, "depth": 2}',
    "eval.runs=2",
    "eval.epochs=60",
    "apm.iterations=12",
    "apm.student_epochs=4",
    "apm.num_checkpoints=2",
    "full.runs=1",
    "full.epochs=3",
]
COMPARE_FAST = [
    "data.val_size=200",
    'teacher.net_options={"width": 16, "depth": 2}',
    "teacher.epochs=10",
    'experts.net_options={"width": 16, "depth": 2}',
    "experts.num_experts=2",
    "experts.epochs=4",
    "mtt.iterations=8",
    "mtt.syn_steps=3",
    "mtt.expert_epochs=1",
    "mtt.max_start_epoch=2",
    'dm.net_options={"width": 16, "depth": 2}',
    "dm.iterations=20",
    "dm.batch_real=32",
    'eval.net_options={"width": 16, "depth": 2}',
    "eval.runs=2",
    "eval.epochs=60",
    "full.runs=0",
    "cross_archs=[]",
]
TEXT_TINY = tiny_overrides(
    stage1_steps=6, outer_loops=3, full_runs=1, methods=["dilm", "vanilla_lm", "kmeans_medoid", "random", "full"]
)


def sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@dataclass
class Scenario:
    name: str
    stages: str
    argv: list[str]  # without --out; "{replay}" stands for the URL of a replay server this script starts
    results: tuple[str, ...]  # files compared too: safetensors by tensors and metadata, others byte for byte
    metrics: str = "metrics.json"  # compared without timings and provenance


SCENARIOS = [
    Scenario(
        "image_run",
        "teacher training, APM, evaluation",
        ["distill", "image", "run", "--dataset", "digits", "--ipc", "2", *sets(IMAGE_FAST)],
        ("distilled.safetensors",),
    ),
    Scenario(
        "image_compare",
        "expert training, MTT, DM, herding, evaluation",
        [
            "distill",
            "image",
            "compare",
            "--dataset",
            "digits",
            "--ipc",
            "1",
            "--methods",
            "mtt,dm,herding,random",
            *sets(COMPARE_FAST),
        ],
        (),
    ),
    Scenario(
        "text_run",
        "DiLM stages 1 and 2, generation, coresets, evaluation",
        ["distill", "text", "run", "--dataset", "fine_foods", "--dpc", "2", *sets(TEXT_TINY)],
        (),
    ),
    Scenario(
        "dialogbench_generate",
        "DialogBench generation, repair and LLM filter (replay server)",
        ["dialogbench", "generate", "--llm", "replay", "--base-url", "{replay}", "--tasks", "SF,KRG,NLI"]
        + ["--per-task", "20", "--judge-llm", "replay", "--concurrency", "4"],
        ("instances.jsonl",),
        "summary.json",
    ),
    Scenario(
        "dialogbench_eval",
        "DialogBench base scoring",
        [
            "dialogbench",
            "eval",
            "--model",
            "smollm2",
            "--mode",
            "base",
            "--tasks",
            "SF,KRG,NLI",
            "--limit",
            "3",
            "--device",
            "cpu",
        ],
        (),
    ),
]


def strip(obj):
    """`obj` without timings, provenance and other values that differ between identical runs."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if not any(w in k.lower() for w in VOLATILE)}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def fingerprint(out: Path, sc: Scenario) -> str:
    """One hash of a finished run's results: metrics and result tensors, without timings and provenance."""
    from safetensors import safe_open

    h = hashlib.sha256(json.dumps(strip(json.loads((out / sc.metrics).read_text())), sort_keys=True).encode())
    for name in sc.results:
        if not name.endswith(".safetensors"):
            h.update((out / name).read_bytes())
            continue
        with safe_open(str(out / name), "pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            h.update(json.dumps(strip(meta), sort_keys=True).encode())
            for key in sorted(f.keys()):
                h.update(key.encode() + f.get_tensor(key).numpy().tobytes())
    return h.hexdigest()


REPLAY: dict[str, str] = {}  # "{replay}" -> the URL of the replay server, once started


def command(sc: Scenario, out: Path) -> list[str]:
    if any("{replay}" in a for a in sc.argv) and "{replay}" not in REPLAY:
        from distillkit.dialogbench.generate.replay import ReplayServer

        REPLAY["{replay}"] = ReplayServer().url  # deterministic answers per request; lives as long as this script
    argv = [REPLAY.get(a, a) for a in sc.argv]
    return [str(BIN / argv[0]), *argv[1:], "--out", str(out)]


def scenario_env(env: dict, out: Path) -> dict:
    """The environment of one run folder: its own response cache, so no run is answered from another's cache."""
    return {**env, "DISTILLKIT_CACHE": str(out.parent / f"{out.name}_cache")}


def run_to_end(sc: Scenario, out: Path, env: dict) -> tuple[float, int]:
    """Rerun until exit 0; returns the wall time of the last run and how many runs it took."""
    for attempt in range(1, 6):
        start = time.perf_counter()
        proc = subprocess.run(command(sc, out), env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            return time.perf_counter() - start, attempt
        print(f"  {sc.name}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
    raise SystemExit(f"{sc.name}: did not finish after 5 runs")


def killed_once(sc: Scenario, out: Path, env: dict, after: float) -> bool:
    """Start the command and SIGKILL it after `after` seconds; False if it finished first."""
    proc = subprocess.Popen(command(sc, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, help="kill trials per scenario")
    ap.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_kill_resume"))
    ap.add_argument("--json", type=Path, default=Path("bench/results/kill_resume.json"))
    ap.add_argument("--append", action="store_true", help="update these scenarios in an existing --json")
    args = ap.parse_args()
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0"}
    rng = random.Random(args.seed)
    chosen = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    report: dict = {"trials_per_scenario": args.trials, "seed": args.seed, "scenarios": {}}
    if args.append and args.json.exists():
        report = json.loads(args.json.read_text())
    for sc in chosen:
        ref_dir = args.out / sc.name / "reference"
        shutil.rmtree(ref_dir, ignore_errors=True)
        own_cache = "{replay}" in sc.argv  # a server's answers are cached: each folder gets its own cache
        ref_seconds, _ = run_to_end(sc, ref_dir, scenario_env(env, ref_dir) if own_cache else env)
        reference = fingerprint(ref_dir, sc)
        rows = []
        for t in range(args.trials):
            out = args.out / sc.name / f"trial{t}"
            shutil.rmtree(out, ignore_errors=True)
            share = rng.uniform(0.1, 0.9)
            run_env = scenario_env(env, out) if own_cache else env
            killed = killed_once(sc, out, run_env, share * ref_seconds)
            _, runs = run_to_end(sc, out, run_env)
            same = fingerprint(out, sc) == reference
            rows.append({"kill_after_share": round(share, 3), "killed": killed, "reruns": runs, "identical": same})
            print(f"{sc.name} trial {t}: kill at {share:.0%} -> identical={same}", flush=True)
        report["scenarios"][sc.name] = {
            "stages": sc.stages,
            "command": " ".join(sc.argv + ["--out", "DIR"]),
            "reference_seconds": round(ref_seconds, 1),
            "trials": rows,
            "killed": sum(r["killed"] for r in rows),
            "identical": sum(r["identical"] for r in rows),
        }
    report["total_trials"] = sum(len(s["trials"]) for s in report["scenarios"].values())
    report["total_killed"] = sum(s["killed"] for s in report["scenarios"].values())
    report["total_identical"] = sum(s["identical"] for s in report["scenarios"].values())
    write_json(args.json, report)
    print(json.dumps({k: v for k, v in report.items() if k != "scenarios"}))


if __name__ == "__main__":
    main()
