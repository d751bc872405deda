"""What each DiLM stage does to the generator's class conditioning, on a finished SmolLM2 bench run.

    .venv/bin/python bench/bench_dilm_conditioning.py --run runs/bench_dilm_smollm2

Reads a finished `bench_dilm.py --schedule smollm2` run and trains two variants beside it, each in its
own resumable run directory under RUN/conditioning/:
  stage1_mult1  stage 1 with the class tokens at the generator's learning rate (multiplier 1, the paper's)
  gm_mult100    stage 2 from the run's vanilla generator with the class tokens at 100x the step there too
For every generator (the run's vanilla and DiLM generators and the two variants): its accuracy as a
generative classifier on the validation texts, and the label fidelity of `--samples` freshly sampled
texts per class as judged by a probe and by the full-data learner (`bench_dilm.real_judges`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from bench_dilm import balanced_accuracy, class_conditioning, real_judges

from distillkit.runs import write_json
from distillkit.text.api import build_config
from distillkit.text.pipeline import DiLMRun
from distillkit.text.synthetic import generate_pool

VARIANTS = {
    "stage1_mult1": (["stage1.class_token_lr_mult=1"], "vanilla"),
    "gm_mult100": (["gm.class_token_lr_mult=100"], "dilm"),
}


def variant_run(run: DiLMRun, name: str) -> DiLMRun:
    """A run directory with the base config plus the variant's overrides (stage 1 shared for stage-2 variants)."""
    overrides, stage = VARIANTS[name]
    out = run.out / "conditioning" / name
    cfg = build_config(run.cfg.dataset, run.cfg.preset, config_file=run.out / "config.json", overrides=overrides)
    var = DiLMRun(cfg, out, progress=True)
    if stage == "dilm" and not (out / "generator_vanilla").exists():
        shutil.copytree(run.out / "generator_vanilla", out / "generator_vanilla")
    return var


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/bench_dilm_smollm2"))
    ap.add_argument("--samples", type=int, default=200, help="fresh texts per class and generator")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    cfg = build_config("fine_foods", "quick", config_file=args.run / "config.json")
    run = DiLMRun(cfg, args.run, progress=True)
    generators = {"vanilla (stage 1, class tokens x100)": run.vanilla_generator()}
    generators["dilm (+ stage 2, class tokens x1)"] = run.dilm_generator()
    generators["stage 1, class tokens x1 (paper)"] = variant_run(run, "stage1_mult1").vanilla_generator()
    generators["dilm, class tokens x100 in stage 2 too"] = variant_run(run, "gm_mult100").dilm_generator()
    judges = real_judges(run)
    out: dict = {
        "samples_per_class": args.samples,
        "ceilings": {j: ceiling for j, (_, ceiling) in judges.items()},
        "generators": {},
    }
    for name, gen in generators.items():
        pool = generate_pool(gen, run.data.train, args.samples, args.seed, cfg.gen_batch_size, progress=True)
        row = {"generative_classifier": class_conditioning(gen, run.data.validation)}
        row.update({j: balanced_accuracy(pool, fn) for j, (fn, _) in judges.items()})
        out["generators"][name] = row
        write_json(args.run / "conditioning" / "conditioning.json", out)
    lines = [
        "| generator | generative classifier, validation (balanced acc.) | loss spread (nats/token) | "
        "fidelity: probe | fidelity: judge |",
        "|---|---|---|---|---|",
    ]
    for name, row in out["generators"].items():
        gc = row["generative_classifier"]
        lines.append(
            f"| {name} | {gc['balanced_accuracy']:.1f} | {gc['mean_loss_spread']:.3f} | "
            f"{row['probe']:.1f} | {row['judge']:.1f} |"
        )
    out["table"] = "\n".join(lines)
    write_json(args.run / "conditioning" / "conditioning.json", out)
    print(out["table"])
    print(json.dumps(out["ceilings"]), f"largest binomial std of a fidelity: {100 * np.sqrt(0.125 / args.samples):.1f}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
