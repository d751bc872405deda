"""Evaluation runs trained together (eval.batched) against one after another: seconds, parameters, accuracy.

For each ConvNet width and IPC, R evaluation networks are trained on a seeded random real subset (hard labels,
CE, DSA, the evaluator's schedule shortened to --epochs) by `train_runs`, once one after another and once
together; the two modes alternate within each repeat (the first mode of a repeat alternates too), so both see
the same load. Per cell it records the wall seconds of every repeat, the speed-up (median sequential / median
batched), the largest difference between a batched network's parameters and its sequential twin's, and the test
accuracy of each network both ways with how often twins predict the same class. As a yardstick for float
rounding it also trains the sequential path with one thread instead of two and records the same parameter
difference (the sequential path against itself): training amplifies any rounding difference at ReLU kinks.

    python bench/bench_batched_eval.py --out bench/results/batched_eval.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def param_diff(nets: list, twins: list) -> dict:
    """The largest difference between twin networks' parameters: absolute, relative per network (‖Δθ‖/‖θ‖ over
    all its parameters) and relative per tensor (with the tensor's name)."""
    out = {"max_abs": 0.0, "max_rel_net": 0.0, "max_rel_tensor": 0.0, "tensor": ""}
    for a, b in zip(nets, twins, strict=True):
        pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
        flat = [torch.cat([t.detach().flatten() for t in p.values()]) for p in (pa, pb)]
        out["max_rel_net"] = max(out["max_rel_net"], float((flat[0] - flat[1]).norm() / flat[0].norm()))
        for name, p in pa.items():
            d = (p - pb[name]).detach()
            out["max_abs"] = max(out["max_abs"], float(d.abs().max()))
            rel = float(d.norm() / p.detach().norm())
            if rel > out["max_rel_tensor"]:
                out["max_rel_tensor"], out["tensor"] = rel, name
    return out


def scores(nets: list, data) -> tuple[list[float], torch.Tensor]:
    from distillkit.image.train import predict

    preds = torch.stack([predict(n, data.x_test).argmax(1) for n in nets])
    return [float((p == data.y_test).float().mean() * 100) for p in preds], preds


def timed_training(x, y, data, cfg, device: str, threads: int | None = None) -> tuple[float, list]:
    """Seconds to train `cfg.runs` evaluation networks (with `threads` CPU threads for this call), and the networks."""
    from distillkit.image.evaluate import eval_nets, train_runs

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    nets = eval_nets(cfg, data, device)
    sync(device)
    start = time.perf_counter()
    train_runs(nets, x, y, cfg)
    sync(device)
    seconds = time.perf_counter() - start
    torch.set_num_threads(before)
    return seconds, nets


def op_profile(x, y, data, cfg, device: str, top: int = 8) -> dict[str, float]:
    """Self CPU milliseconds of the `top` costliest operators in training `cfg.runs` networks (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    from distillkit.image.evaluate import eval_nets, train_runs

    nets = eval_nets(cfg, data, device)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_runs(nets, x, y, cfg)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    costs = {e.key.removeprefix("aten::"): e.self_cpu_time_total / 1e3 for e in ops}
    return {"total": sum(costs.values()), **dict(list(costs.items())[:top])}


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def cell(data, width: int, ipc: int, args: argparse.Namespace, device: str = "cpu") -> dict:
    """One (width, IPC): interleaved repeats of both modes, then parameter and accuracy agreement.

    `args` holds runs, epochs, repeats, thread_reference (the one-thread sequential yardstick) and profile (where
    the time goes, per operator); the last two on the CPU only."""
    from distillkit.image.evaluate import EvalConfig, random_subset

    x, y = random_subset(data, ipc, 0)
    base = EvalConfig(
        net_options={"width": width}, runs=args.runs, epochs=args.epochs, label_mode="hard", loss="ce", seed=0
    )
    modes = {"sequential": base.model_copy(update={"batched": False}), "batched": base}
    for cfg in modes.values():  # warm-up: kernels and allocator for these shapes, outside the timings
        timed_training(x, y, data, cfg.model_copy(update={"epochs": 1}), device)
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    nets: dict[str, list] = {}
    for k in range(args.repeats):
        for mode in list(modes)[:: 1 if k % 2 == 0 else -1]:
            s, nets[mode] = timed_training(x, y, data, modes[mode], device)
            seconds[mode].append(s)
            print(f"width {width} ipc {ipc} repeat {k} {mode}: {s:.1f} s", flush=True)
    acc = {m: scores(nets[m], data) for m in modes}
    same = (acc["sequential"][1] == acc["batched"][1]).float().mean(1) * 100
    out = {
        "width": width,
        "ipc": ipc,
        "images": len(x),
        "steps_per_epoch": -(-len(x) // base.batch_size),
        "seconds": seconds,
        "speedup": statistics.median(seconds["sequential"]) / statistics.median(seconds["batched"]),
        "param_diff": param_diff(nets["sequential"], nets["batched"]),
        "acc_sequential": acc["sequential"][0],
        "acc_batched": acc["batched"][0],
        "max_acc_diff": max(abs(a - b) for a, b in zip(acc["sequential"][0], acc["batched"][0], strict=True)),
        "same_prediction_pct": [float(s) for s in same],
    }
    if args.profile and device == "cpu":
        out["op_ms"] = {m: op_profile(x, y, data, cfg, device) for m, cfg in modes.items()}
    if args.thread_reference and device == "cpu":
        s, one_thread = timed_training(x, y, data, modes["sequential"], device, threads=1)
        out["one_thread_param_diff"] = param_diff(nets["sequential"], one_thread)
        out["one_thread_seconds"] = s
    print({k: v for k, v in out.items() if k not in ("seconds",)}, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--widths", nargs="+", type=int, default=[128, 64])
    p.add_argument("--ipcs", nargs="+", type=int, default=[10, 50])
    p.add_argument("--runs", type=int, default=5, help="R, the networks trained together")
    p.add_argument("--epochs", type=int, default=20, help="the evaluation schedule, shortened (lr x0.1 after half)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-thread-reference", dest="thread_reference", action="store_false")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the per-operator profile")
    p.add_argument("--out", type=Path, default=Path("bench/results/batched_eval.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    from distillkit.data.images import load_images
    from distillkit.runs import provenance, write_json

    start = time.perf_counter()
    load = os.getloadavg()[1]
    data = load_images(args.dataset, seed=0)
    cells = [cell(data, w, ipc, args) for w in args.widths for ipc in args.ipcs]
    write_json(
        args.out,
        {
            "dataset": args.dataset,
            "runs": args.runs,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "cells": cells,
            "load_average_5min": {"before": round(load, 2), "after": round(os.getloadavg()[1], 2)},
            "cpu_count": os.cpu_count(),
            "command": "python bench/bench_batched_eval.py " + " ".join(sys.argv[1:]),
            "provenance": provenance("cpu", time.perf_counter() - start),
        },
    )


if __name__ == "__main__":
    main()
