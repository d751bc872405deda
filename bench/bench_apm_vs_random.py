"""Does APM beat a random real subset under the same labels? APM vs random (averaged over draws), soft and hard.

Runs `distill image run` (the Python API) per IPC with one shared teacher pool, hard-label evaluation on,
and writes the rows (APM, random mean ± std over draws, the gain with its 2-std uncertainty, how well the
students and APM's proxies fit) with the teacher and full-data references to one JSON. It also scores
APM's own initial real images under the same protocol: APM minus its initial images is a paired measure
of what the image updates did, free of the spread between random draws.

    python bench/bench_apm_vs_random.py --dataset digits --ipcs 1 10 --preset quick \
        --out bench/results/apm_vs_random_digits.json
    python bench/bench_apm_vs_random.py --dataset digits --ipcs 1 10 --preset quick --schedule published \
        --set apm.iterations=2500 apm.student_epochs=250 apm.num_checkpoints=5 eval.epochs=1000 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def init_eval(cfg, data, pool, label: str, run_dir: Path) -> dict:
    """APM's initial real images (same seed, same draw) scored like the set; cached in the run directory."""
    from distillkit.devices import resolve_device
    from distillkit.image.evaluate import evaluate_set
    from distillkit.image.initial import init_images
    from distillkit.image.teacher import TeacherPool
    from distillkit.image.train import predict
    from distillkit.runs import read_json, write_json

    path = run_dir / "evals" / f"init_{label}.json"
    if path.exists():
        return read_json(path)
    x, y = init_images(data, cfg.apm)
    soft = predict(TeacherPool(pool).nets[cfg.apm.label_teacher], x)
    ec = cfg.eval.model_copy(update={"label_mode": label, "loss": "l1" if label == "soft" else "ce"})
    r = evaluate_set(x, y, soft, data, ec, resolve_device(cfg.device), f"eval init {label}")
    write_json(path, r)
    return r


def reference(cfg, data, runs_dir: Path) -> dict:
    """The full-data reference under `cfg.full` (epochs chosen on validation), cached beside the run folders."""
    from distillkit.devices import resolve_device
    from distillkit.image.evaluate import evaluate_full
    from distillkit.runs import read_json, write_json

    path = runs_dir / f"{cfg.data.dataset}_full_patience{cfg.full.patience}.json"
    if path.exists():
        return read_json(path)
    ec = cfg.eval.model_copy(update={"label_mode": "hard", "loss": "ce"})
    r = evaluate_full(data, ec, cfg.full, resolve_device(cfg.device))
    write_json(path, r)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ipcs", nargs="+", type=int, default=[1, 10])
    p.add_argument("--preset", default="quick")
    p.add_argument("--schedule", default=None, help="name of the schedule in the table (default: the preset)")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. apm.iterations=2500")
    p.add_argument("--reference-patience", type=int, nargs="*", default=[10], help="full-data references to add")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/bench_apm_vs_random"))
    p.add_argument("--out", type=Path, default=Path("bench/results/apm_vs_random_digits.json"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from distillkit.cli.image import parse_sets
    from distillkit.image.pipeline import make_config, run_image

    schedule = args.schedule or args.preset
    rows, references = [], {}
    pool = None
    for ipc in args.ipcs:
        overrides = parse_sets(args.set)
        overrides.setdefault("data", {})["dataset"] = args.dataset
        overrides.setdefault("apm", {})["ipc"] = ipc
        overrides["hard_label_eval"] = True
        if pool is not None:  # the full-data reference does not depend on IPC
            overrides.setdefault("full", {})["runs"] = 0
        run_dir = args.runs_dir / f"{args.dataset}_{schedule}_ipc{ipc}"
        start = time.perf_counter()
        cfg = make_config(args.preset, overrides)
        m = run_image(cfg, run_dir, pool)
        pool = pool or run_dir / "teachers"
        res = m["results"]
        data = cfg.data.load(cfg.seed)
        init = {label: init_eval(cfg, data, pool, label, run_dir) for label in ("soft", "hard")}
        if "full" in res:
            references[f"{args.dataset} full data ({schedule})"] = (
                f"{res['full']['mean']:.2f} ± {res['full']['std']:.2f} % ({res['full']['protocol']}; "
                f"epochs chosen {res['full']['epochs_chosen']})"
            )
        for patience in args.reference_patience if ipc == args.ipcs[0] else []:
            full_cfg = cfg.full.model_copy(update={"patience": patience, "runs": 3})
            ref = reference(cfg.model_copy(update={"full": full_cfg}), data, args.runs_dir)
            references[f"{args.dataset} full data, patience {patience}"] = (
                f"{ref['mean']:.2f} ± {ref['std']:.2f} % (epochs chosen {ref['epochs_chosen']}, "
                f"converged {ref['converged']})"
            )
        t = m["teacher"]
        references[f"{args.dataset} teacher ({schedule})"] = (
            f"{t['test_acc']:.2f} % test, best validation epoch {t['best_epoch']} of {t['epochs_run']}"
        )
        for labels, apm, rnd, lm in (
            ("soft (L1)", "apm", "random", "soft"),
            ("hard (CE)", "apm_hard", "random_hard", "hard"),
        ):
            rows.append(
                {
                    "dataset": args.dataset,
                    "ipc": ipc,
                    "schedule": schedule,
                    "labels": labels,
                    "apm": {k: res[apm][k] for k in ("mean", "std", "runs", "train_fit")},
                    "random": {k: res[rnd][k] for k in ("mean", "std", "draw_means", "train_fit")},
                    "gain": m["gain_over_random"][apm],
                    "init": {k: init[lm][k] for k in ("mean", "std", "runs", "train_fit")},
                    "minus_init": res[apm]["mean"] - init[lm]["mean"],
                    "proxy_fit": m["proxy_fit"],
                    "warnings": m["warnings"],
                    "config": cfg.model_dump(),
                    "seconds": time.perf_counter() - start,
                }
            )
        print(json.dumps({k: rows[-1][k] for k in ("ipc", "labels", "gain")}), flush=True)
    # rows of other datasets, schedules or IPCs already in the file are kept (read now: another run may have added some)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"rows": [], "references": {}}
    replaced = {(args.dataset, schedule, ipc) for ipc in args.ipcs}
    kept = [r for r in previous["rows"] if (r["dataset"], r["schedule"], r["ipc"]) not in replaced]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"rows": kept + rows, "references": {**previous["references"], **references}}, indent=2)
    )


if __name__ == "__main__":
    main()
