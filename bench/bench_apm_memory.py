"""Peak memory and seconds per APM image update against the segment size (same run, same data).

Each setting runs in a fresh subprocess; peak memory comes from distillkit.image.memory.PeakMemory.
On the CPU it is the peak of the bytes the C
allocator has handed out (glibc mallinfo2, sampled every 0.2 ms by a thread) above the level before the
first update: resident-set figures are unreliable where the kernel reclaims pages proactively. On CUDA
it is torch.cuda.max_memory_allocated above the level before the first update. The gradient of every segmented
setting is compared with the one-shot gradient.

    python bench/bench_apm_memory.py --dataset mnist --ipc 50 --out bench/results/apm_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import json, sys, time, torch
from distillkit.image.apm import APMConfig, image_gradient
from distillkit.image.memory import PeakMemory
from distillkit.seeding import seeded
from distillkit.image.train import frozen
from distillkit.nets import build_net
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
dev = torch.device(args["device"])
cfg = APMConfig(ipc=args["ipc"], num_checkpoints=args["k"], student_epochs=args["k"])
images, labels = torch.load(args["init_path"])  # real initial images, saved by the driver
c, h = images.shape[1], images.shape[2]
def net(i):
    with seeded(0, "bench", i):
        return frozen(build_net("convnet", c, 10, h).to(dev))
teacher, ckpts = net(0), [net(i + 1) for i in range(args["k"])]
idx = torch.arange(len(labels))
seg = args["segment"]
times = []
with PeakMemory(dev) as pm:
    for step in range(args["steps"]):
        start = time.perf_counter()
        grad, _ = image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=seg)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
peak = pm.peak_mb
torch.save(grad.cpu(), args["grad_path"])
print(json.dumps({"peak_mb": peak, "sec_per_update": sorted(times)[len(times) // 2]}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--ipc", type=int, default=50)
    p.add_argument("--k", type=int, default=5, help="proxy checkpoints K")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("bench/results/apm_memory.json"))
    args = p.parse_args()
    import torch

    from distillkit.data.images import load_images
    from distillkit.image.apm import APMConfig
    from distillkit.image.initial import init_images

    data = load_images(args.dataset, size=args.size, channels=args.channels, val_size=1000)
    init_path = args.out.parent / "init_images.pt"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(init_images(data, APMConfig(ipc=args.ipc)), init_path)
    n = args.ipc * data.num_classes
    del data
    rows = []
    full_grad = None
    for frac, seg in [("1", n), ("1/2", n // 2), ("1/5", n // 5)]:
        grad_path = args.out.parent / f"grad_{seg}.pt"
        job = {**vars(args), "segment": seg, "grad_path": str(grad_path), "init_path": str(init_path), "out": None}
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True, check=True
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        grad = torch.load(grad_path)
        grad_path.unlink()
        full_grad = grad if full_grad is None else full_grad
        row.update(
            segment=seg,
            fraction=frac,
            max_abs_grad_diff=float((grad - full_grad).abs().max()),
            grad_scale=float(full_grad.abs().max()),
        )
        rows.append(row)
        print(json.dumps(row))
    init_path.unlink()
    base = rows[0]
    for r in rows:
        r["memory_ratio_vs_full"] = r["peak_mb"] / base["peak_mb"]
        r["time_ratio_vs_full"] = r["sec_per_update"] / base["sec_per_update"]
    result = {
        "setting": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print("| segment | of batch | peak memory (MB) | s / update | memory vs full | time vs full | max abs grad diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['segment']} | {r['fraction']} | {r['peak_mb']:.0f} | {r['sec_per_update']:.2f} | "
            f"{r['memory_ratio_vs_full']:.2f} | {r['time_ratio_vs_full']:.2f} | {r['max_abs_grad_diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
