"""Peak memory and seconds per distillation iteration: APM against MTT (unrolled) and TESLA (constant memory).

All settings run in one invocation on one machine, on the same data and the same ConvNet (width 128,
depth 3), so the ratios are fair. Each setting runs in a fresh subprocess, and its peak memory is taken
with distillkit.image.memory.PeakMemory. On the CPU that is the glibc allocator's peak above the level at
entry; on CUDA it is torch.cuda.max_memory_allocated above that level.

- APM iteration = one image gradient (K = 5 frozen checkpoints plus the teacher, the whole synthetic set
  per update, in segments of the whole set, 1/2 and 1/5) + one proxy refresh / R (R = 3). A refresh
  trains a proxy student for E = 250 epochs on the synthetic set. It is timed over --proxy-epochs epochs
  and scaled linearly to E, since every epoch does the same work. APM's peak memory is the larger of the
  image step's and the refresh's. The networks are random: the cost of a step does not depend on the
  weights.
- MTT / TESLA iteration = one call of distill_mtt's loop body (the expert's two parameter rows read from
  disk, N student steps, the image and lr updates), through the real distill_mtt. Settings follow MTT's
  CIFAR-10 runs: N = 30 student steps, M = 2 expert epochs, all images per step at IPC 10. At IPC 50, MTT
  used all 500 images per step too. Unrolled over 30 steps that needs roughly 40 GB on the CPU for this net
  at 3x32x32 (about 1.4 GB per step), so --batch-syn caps the images per step at 100, in the spirit of
  TESLA's CIFAR-100 IPC 50 runs (batch_syn 125); 100 images per step need about 0.3 GB per unrolled step.
  The experts are one short trajectory per shape: 2 epochs from a random init on a 2000-image subset. The
  iteration cost does not depend on which trajectory is matched. Expert training is a one-time cost, like
  APM's teacher, and is not counted. The share of an iteration spent reading the expert rows is reported
  (expert_fetch_share).
- Seconds per iteration are the median over --steps iterations, after one warm-up iteration. The total
  for the published schedule (APM 2500 iterations, MTT/TESLA 5000) is also reported.

    python bench/bench_apm_vs_mtt.py                               # IPC 10 and 50, 1x28x28 and 3x32x32
    python bench/bench_apm_vs_mtt.py --ipcs 10 --steps 1 --shapes 1x28x28 --syn-steps 5 --proxy-epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PUBLISHED_ITERATIONS = {"apm": 2500, "mtt": 5000, "tesla": 5000}
WIDTH = 128


def load(shape: str):
    from distillkit.data.images import load_images

    size = 32 if shape == "3x32x32" else None
    return load_images("mnist", size=size, channels=3 if size else None, val_size=1000, train_limit=2000)


def worker(job: dict) -> dict:
    """One setting in a fresh process: returns peak MB and seconds per iteration."""
    import torch

    torch.set_num_threads(job["threads"])
    from distillkit.image.memory import PeakMemory

    dev = torch.device(job["device"])
    if job["method"] == "apm_step":
        from distillkit.image.apm import APMConfig, image_gradient
        from distillkit.image.train import frozen
        from distillkit.nets import build_net
        from distillkit.seeding import seeded

        images, labels = torch.load(job["init_path"])
        c, h = images.shape[1], images.shape[2]

        def net(i: int):
            with seeded(0, "bench", i):
                return frozen(build_net("convnet", c, 10, h, width=WIDTH).to(dev))

        teacher, ckpts = net(0), [net(i + 1) for i in range(job["k"])]
        cfg = APMConfig(ipc=job["ipc"], num_checkpoints=job["k"], student_epochs=job["k"])
        idx = torch.arange(len(labels))
        times = []
        with PeakMemory(dev) as pm:
            for _ in range(job["steps"] + 1):
                start = time.perf_counter()
                image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=job["segment"])
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        return {"peak_mb": pm.peak_mb, "sec": statistics.median(times[1:])}
    if job["method"] == "apm_proxy":
        from distillkit.image.apm import APMConfig, train_proxy
        from distillkit.image.train import predict
        from distillkit.nets import build_net
        from distillkit.seeding import seeded

        images, _ = torch.load(job["init_path"])
        c, h = images.shape[1], images.shape[2]
        with seeded(0, "bench", 0):
            teacher = build_net("convnet", c, 10, h, width=WIDTH).to(dev)
        z = predict(teacher, images)
        meta = {"arch": "convnet", "channels": c, "num_classes": 10, "image_size": h, "net_options": {"width": WIDTH}}
        e = job["proxy_epochs"]
        cfg = APMConfig(ipc=job["ipc"], student_epochs=e, num_checkpoints=min(job["k"], e))
        train_proxy(
            images[:8], z[:8], meta, cfg.model_copy(update={"student_epochs": 1, "num_checkpoints": 1}), 0, dev
        )  # warm-up
        with PeakMemory(dev) as pm:
            start = time.perf_counter()
            train_proxy(images, z, meta, cfg, 0, dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            sec = time.perf_counter() - start
        return {"peak_mb": pm.peak_mb, "sec_per_epoch": sec / e}
    from distillkit.image.experts import Experts
    from distillkit.image.mtt import MTTConfig, distill_mtt

    data = load(job["shape"])
    experts = Experts(job["experts"], dev)
    cfg = MTTConfig(
        ipc=job["ipc"],
        iterations=job["steps"] + 1,
        syn_steps=job["syn_steps"],
        expert_epochs=job["expert_epochs"],
        max_start_epoch=1,
        batch_syn=job["batch_syn"],
        gradient="constant_memory" if job["method"] == "tesla" else "unrolled",
    )
    stamps = []
    with PeakMemory(dev) as pm:
        start = time.perf_counter()
        distill_mtt(data, experts, cfg, device=dev, on_iteration=lambda t, s: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    fetch = []
    for _ in range(5):
        t0 = time.perf_counter()
        experts.pair(0, 0, job["expert_epochs"])
        fetch.append(time.perf_counter() - t0)
    sec = statistics.median(times[1:])
    return {"peak_mb": pm.peak_mb, "sec": sec, "expert_fetch_share": statistics.median(fetch) / sec}


def run_worker(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {job['method']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ipcs", type=int, nargs="+", default=[10, 50])
    p.add_argument("--shapes", nargs="+", default=["1x28x28", "3x32x32"], choices=["1x28x28", "3x32x32"])
    p.add_argument("--steps", type=int, default=3, help="measured iterations per setting (after one warm-up)")
    p.add_argument("--syn-steps", type=int, default=30, help="MTT/TESLA student steps N (MTT CIFAR-10: 30)")
    p.add_argument("--expert-epochs", type=int, default=2, help="M (MTT CIFAR-10: 2)")
    p.add_argument("--batch-syn", type=int, default=100, help="cap on MTT/TESLA images per student step")
    p.add_argument("--k", type=int, default=5, help="APM checkpoints K")
    p.add_argument("--student-epochs", type=int, default=250, help="APM proxy epochs E per refresh")
    p.add_argument("--refresh-every", type=int, default=3, help="APM refresh period R")
    p.add_argument("--proxy-epochs", type=int, default=5, help="proxy epochs actually timed (scaled to E)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("bench/results/apm_vs_mtt.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    from distillkit.image.apm import APMConfig
    from distillkit.image.experts import ExpertConfig, train_experts
    from distillkit.image.initial import init_images

    args.out.parent.mkdir(parents=True, exist_ok=True)
    common = {"threads": args.threads, "device": args.device, "steps": args.steps, "k": args.k}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            data = load(shape)
            experts_dir = Path(tmp) / f"experts_{shape}"
            start = time.perf_counter()
            train_experts(
                data,
                ExpertConfig(num_experts=1, epochs=args.expert_epochs, net_options={"width": WIDTH}),
                experts_dir,
                args.device,
            )
            print(f"{shape}: short expert trajectory in {time.perf_counter() - start:.0f} s", flush=True)
            for ipc in args.ipcs:
                n = 10 * ipc
                init_path = Path(tmp) / "init.pt"
                torch.save(init_images(data, APMConfig(ipc=ipc)), init_path)
                setting = {"shape": shape, "ipc": ipc, "images": n}
                proxy = run_worker(
                    {
                        **common,
                        "method": "apm_proxy",
                        "ipc": ipc,
                        "init_path": str(init_path),
                        "proxy_epochs": args.proxy_epochs,
                    }
                )
                refresh = proxy["sec_per_epoch"] * args.student_epochs
                for frac, seg in [("1", n), ("1/2", n // 2), ("1/5", n // 5)]:
                    r = run_worker(
                        {**common, "method": "apm_step", "ipc": ipc, "segment": seg, "init_path": str(init_path)}
                    )
                    rows.append(
                        {
                            **setting,
                            "method": "apm",
                            "variant": f"segment {seg} ({frac})",
                            "peak_mb": max(r["peak_mb"], proxy["peak_mb"]),
                            "image_step_mb": r["peak_mb"],
                            "proxy_mb": proxy["peak_mb"],
                            "image_step_sec": r["sec"],
                            "refresh_sec": refresh,
                            "sec": r["sec"] + refresh / args.refresh_every,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
                batch = min(n, args.batch_syn)
                for method in ["mtt", "tesla"]:
                    r = run_worker(
                        {
                            **common,
                            "method": method,
                            "ipc": ipc,
                            "shape": shape,
                            "experts": str(experts_dir),
                            "syn_steps": args.syn_steps,
                            "expert_epochs": args.expert_epochs,
                            "batch_syn": batch,
                        }
                    )
                    rows.append({**setting, "method": method, "variant": f"N={args.syn_steps}, {batch} img/step", **r})
                    print(json.dumps(rows[-1]), flush=True)
    for r in rows:
        base = next(b for b in rows if b["method"] == "mtt" and b["shape"] == r["shape"] and b["ipc"] == r["ipc"])
        r["memory_vs_mtt"] = r["peak_mb"] / base["peak_mb"]
        r["time_vs_mtt"] = r["sec"] / base["sec"]
        r["published_total_h"] = r["sec"] * PUBLISHED_ITERATIONS[r["method"]] / 3600
    result = {
        "setting": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "net": f"ConvNet width {WIDTH}, depth 3",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nresults: {args.out}\n")
    print(
        "| shape | IPC | method | setting | peak memory (MB) | s / iteration | memory vs MTT | time vs MTT "
        "| published schedule (h) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['ipc']} | {r['method'].upper()} | {r['variant']} | {r['peak_mb']:.0f} | "
            f"{r['sec']:.2f} | {r['memory_vs_mtt']:.2f} | {r['time_vs_mtt']:.2f} | {r['published_total_h']:.1f} |"
        )


if __name__ == "__main__":
    main()
