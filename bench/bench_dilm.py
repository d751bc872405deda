"""DiLM on the fine-food reviews with a MiniLM learner, CPU-scaled: DiLM, vanilla LM, coresets, random, full.

Also times one gradient-matching step with the closed-form head gradient and with autograd through
the learner, in the same process, on the same batches, and checks that both give the same gradient.

    .venv/bin/python bench/bench_dilm.py --out runs/bench_dilm
    .venv/bin/python bench/bench_dilm.py --schedule smollm2 --out runs/bench_dilm_smollm2
    .venv/bin/python bench/bench_dilm.py --schedule smollm2_long --out runs/bench_dilm_smollm2_long
    .venv/bin/python bench/bench_dilm.py --schedule fixed --out runs/bench_dilm_fixed --last-row --extras fidelity \
        --threads 1 --json bench/results/dilm_fine_foods_fixed.json

The schedule is scaled to a shared 2-core CPU (see docs/benchmarks.md, section DiLM); results land in
OUT/metrics.json, OUT/accuracy_vs_dpc.png and OUT/bench.json, and a markdown table is printed. `--json` also
writes the summary that docs/benchmarks.md renders (bench/render.py): every row with its spread over sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from distillkit.data.text import TextDataset
from distillkit.runs import read_json, write_json
from distillkit.text.api import build_config
from distillkit.text.pipeline import DiLMRun

SCALED = [
    'generator="scratch-gpt2"',
    'learner="minilm"',
    "max_length=48",
    "max_train=1000",
    "max_validation=200",
    "max_test=500",
    "dpcs=[5,10,20]",
    "oversample=10",
    "share_pool=true",
    "num_sets=5",
    "runs_per_set=2",
    "gen_batch_size=64",
    'methods=["dilm","vanilla_lm","kmeans_medoid","greedy_k_center","herding","random","full"]',
    "stage1.steps=150",
    "stage1.batch_size=16",
    "stage1.lr=0.001",
    "stage1.checkpoint_every=25",
    "gm.outer_loops=4",
    "gm.inner_loops=5",
    "gm.learner_steps=5",
    "gm.syn_batch=16",
    "gm.real_batch=20",
    "gm.rt_sets=5",
    "gm.dms_interval=2",
    "gm.lr=0.0001",
    "gm.warmup_ratio=0.05",
    "gm.learner_lr=0.001",
    "gm.learner_batch=32",
    "gm.learner_train_body=false",
    "gm.checkpoint_every=1",
    "finetune.train_body=false",
    "finetune.steps=100",
    "finetune.batch_size=64",
    "finetune.lr=0.01",
    "full_finetune.train_body=false",
    "full_finetune.steps=300",
    "full_finetune.batch_size=64",
    "full_finetune.lr=0.01",
    "full_runs=10",
    "validate_every=0",
    "val_dpc=5",
    "val_sets=1",
    "val_runs=1",
    'checkpoint="last"',
]

# SmolLM2-135M as the generator, the learner's whole body trained between generator steps (as in the
# paper) and full fine-tuning of MiniLM as the evaluator (about 70 min on an idle 2-core CPU); DPC 10
# comes first so that the aim's column is finished for every method first. The class tokens move 100x
# the generator's step in stage 1 (without it the sampled texts carry no class information); in stage 2
# they keep the default 1, as 100 there made no measurable difference (bench_dilm_conditioning.py).
SMOLLM2 = [
    'generator="smollm2-135m"',
    'methods=["dilm","vanilla_lm","kmeans_medoid","herding","random","full"]',
    "dpcs=[10,5,20]",
    "oversample=10",
    "gen_batch_size=100",
    "stage1.steps=120",
    "stage1.lr=0.0001",
    "stage1.checkpoint_every=20",
    "stage1.class_token_lr_mult=100",
    "gm.outer_loops=8",
    "gm.lr=0.0001",
    "gm.learner_lr=0.0001",
    "gm.learner_train_body=true",
    "finetune.train_body=true",
    "finetune.steps=25",
    "finetune.lr=0.0001",
    "full_finetune.train_body=true",
    "full_finetune.steps=60",
    "full_finetune.batch_size=32",
    "full_finetune.lr=0.0001",
]
# The SmolLM2 schedule with the generator trained longer: all 3,600 training reviews (the real-data
# baselines select from all of them too), 4x the stage-1 steps (about 2 epochs) and 2x the stage-2 steps.
SMOLLM2_LONG = ["max_train=null", "stage1.steps=480", "stage1.checkpoint_every=40", "gm.outer_loops=16"]
# The scratch schedule with stage 2 as the diagnosis (docs/benchmarks.md, "DiLM stage 2, explained") asks: lr 5e-6
# and the stage-2 checkpoint chosen on validation every 2 outer loops (steps 0, 10, 20: step 0, the stage-1
# generator, is a candidate), each scored on 2 generated DPC-10 sets x 2 runs. Every training, validation and test
# review; DPC 10 and 5 from one pool of 10 x 10 texts per class and set; the full-data reference keeps its best
# validation step (of 600, every 25). About 45 min on the shared 2-core CPU under a load of 8 to 16.
FIXED = [
    "max_train=null",
    "max_validation=null",
    "max_test=null",
    'methods=["dilm","vanilla_lm","random","kmeans_medoid","herding","full"]',
    "dpcs=[10,5]",
    "gm.lr=0.000005",
    'checkpoint="best"',
    "validate_every=2",
    "val_dpc=10",
    "val_sets=2",
    "val_runs=2",
    "full_finetune.steps=600",
    "full_finetune.select_every=25",
]
SCHEDULES = {
    "scratch": SCALED,
    "smollm2": SCALED + SMOLLM2,
    "smollm2_long": SCALED + SMOLLM2 + SMOLLM2_LONG,
    "fixed": SCALED + FIXED,
}


def time_head_grads(run: DiLMRun, steps: int) -> dict:
    """Seconds per generator step (all classes), closed form vs autograd through MiniLM, same batches.

    One untimed warm-up step per mode; the timed steps alternate the modes (and their order) so that
    neither profits from a warmer cache. `head_seconds` times the head-gradient part alone (learner
    forward passes, per-sample or autograd head gradients, backward to the sample weights).
    """
    from distillkit.text.generator import Generator
    from distillkit.text.gm import build_representative_teacher, head_gradients, matching_loss
    from distillkit.text.train_utils import derive_seed

    cfg = run.cfg
    gen = Generator.load(run.out / "generator_dilm")
    gen.model.eval()
    learner = run.learner()
    learner.reset(1)
    train = run.data.train
    rt = build_representative_teacher(run.real_embeddings(), train.labels, cfg.gm.real_batch, 1)[0]
    real = {c: [train.texts[i] for i in idx] for c, idx in rt.items()}
    syn = {c: gen.sample(c, cfg.gm.syn_batch * (steps + 1), seed=derive_seed(cfg.seed, 90, c)) for c in rt}
    modes = ("closed_form", "autograd")

    def step(mode: str, s: int) -> tuple[float, float, torch.Tensor]:
        gen.model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        for c in rt:
            batch = syn[c][s * cfg.gm.syn_batch : (s + 1) * cfg.gm.syn_batch]
            loss, _ = matching_loss(gen, learner, c, real[c], batch, train.num_classes, head_grad=mode)
            loss.backward()
        total = time.perf_counter() - t0
        grad = torch.cat([p.grad.flatten() for p in gen.model.parameters() if p.grad is not None])
        t0 = time.perf_counter()
        for c in rt:
            batch = syn[c][s * cfg.gm.syn_batch : (s + 1) * cfg.gm.syn_batch]
            w = torch.full((len(batch),), 1 / len(batch), requires_grad=True)
            g_real, g_syn = head_gradients(learner, c, real[c], batch, w, mode)
            (1 - torch.nn.functional.cosine_similarity(g_real, g_syn, dim=0)).backward()
        return total, time.perf_counter() - t0, grad

    grads = {m: step(m, steps)[2] for m in modes}  # warm-up on a batch the timed steps do not use
    secs: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for s in range(steps):
        for mode in modes if s % 2 == 0 else modes[::-1]:
            secs[mode].append(step(mode, s)[:2])
    out: dict = {}
    for mode in modes:
        total, head = np.asarray(secs[mode]).T
        out[mode] = {
            "seconds_per_step_mean": float(total.mean()),
            "seconds_per_step_std": float(total.std()),
            "head_seconds_mean": float(head.mean()),
            "head_seconds_std": float(head.std()),
            "steps": steps,
        }
    diff = (grads["closed_form"] - grads["autograd"]).abs().max().item()
    out["max_abs_grad_difference"] = diff
    out["relative_grad_difference"] = diff / grads["autograd"].abs().max().item()
    out["speedup"] = out["autograd"]["seconds_per_step_mean"] / out["closed_form"]["seconds_per_step_mean"]
    out["head_speedup"] = out["autograd"]["head_seconds_mean"] / out["closed_form"]["head_seconds_mean"]
    out["setup"] = (
        f"real batch {cfg.gm.real_batch}/class (RT), synthetic batch {cfg.gm.syn_batch}/class, "
        f"{train.num_classes} classes, max_length {cfg.max_length}, MiniLM-L6 learner, "
        f"generator {cfg.generator}, torch threads {torch.get_num_threads()}"
    )
    return out


def real_judges(run: DiLMRun) -> dict[str, tuple[Callable[[TextDataset], np.ndarray], float]]:
    """Two classifiers trained on the real training split: name -> (predict, balanced accuracy on real test).

    `probe`: a balanced logistic regression on the selection encoder's embeddings of the real training
    texts; `judge`: the learner fine-tuned on the whole training split with the run's full-data protocol
    (seed 0). The real-test balanced accuracy is each one's ceiling as a judge of generated text.
    """
    from sklearn.linear_model import LogisticRegression

    from distillkit.text.evaluate import finetune, predict

    cfg, test = run.cfg, run.data.test
    probe = LogisticRegression(max_iter=2000, class_weight="balanced").fit(run.real_embeddings(), run.data.train.labels)
    learner = run.learner()
    finetune(learner, run.data.train, cfg.full_finetune, seed=0)
    fns = {
        "probe": lambda ds: probe.predict(run.encoder().embed(ds.texts)),
        "judge": lambda ds: predict(learner, ds, cfg.full_finetune),
    }
    return {name: (fn, balanced_accuracy(test, fn)) for name, fn in fns.items()}


def balanced_accuracy(ds: TextDataset, predict: Callable[[TextDataset], np.ndarray]) -> float:
    """Balanced accuracy (%) of `predict` on `ds`; for generated texts, against the conditioning class."""
    from sklearn.metrics import balanced_accuracy_score

    return 100 * float(balanced_accuracy_score(ds.labels, predict(ds)))


def label_fidelity(run: DiLMRun) -> dict:
    """How class-conditional the generated sets at the largest DPC are, by the `real_judges`.

    Fidelity = a judge's balanced accuracy on a generator's sets, the conditioning class taken as the
    truth (50 = no class information).
    """
    from distillkit.text.synthetic import load_text_set

    judges = real_judges(run)
    out: dict = {f"{j}_real_test_balanced_accuracy": ceiling for j, (_, ceiling) in judges.items()}
    dpc = max(run.cfg.dpcs)
    for method in (m for m in ("dilm", "vanilla_lm") if m in run.cfg.methods):
        sets = [load_text_set(run.set_dir(method, dpc, r)) for r in range(run.cfg.num_sets)]
        out[method] = {"dpc": dpc, "sets": len(sets)}
        for j, (fn, _) in judges.items():
            s = [balanced_accuracy(small, fn) for small in sets]
            out[method][j] = {"mean": float(np.mean(s)), "std": float(np.std(s))}
    return out


@torch.no_grad()
def class_conditioning(gen, val: TextDataset, batch: int = 50) -> dict:
    """How much a generator's LM loss depends on its class token, on the validation texts.

    `balanced_accuracy`: the generator as a generative classifier (argmin over c of the loss of a text
    after `<bos_c>`); `mean_loss_spread`: mean of max_c - min_c of that loss, nats per token (0 = unconditional).
    """
    gen.model.eval()
    losses = torch.stack(
        [
            torch.cat(
                [
                    gen.per_sample_loss(val.texts[i : i + batch], [c] * len(val.texts[i : i + batch])).cpu()
                    for i in range(0, len(val), batch)
                ]
            )
            for c in range(gen.num_classes)
        ],
        1,
    )
    pred = losses.argmin(1).numpy()
    return {
        "balanced_accuracy": balanced_accuracy(val, lambda _: pred),
        "mean_loss_spread": float((losses.max(1).values - losses.min(1).values).mean()),
    }


def generator_conditioning(run: DiLMRun) -> dict:
    """`class_conditioning` of the run's vanilla and DiLM generators (and the last stage-2 one, if there)."""
    from distillkit.text.generator import Generator

    paths = {tag: run.out / f"generator_{tag}" for tag in ("vanilla", "dilm")}
    paths["dilm_last"] = run.out / "last" / "generator_dilm"  # --last-row's generator, when it was run
    return {
        tag: class_conditioning(Generator.load(p, run.cfg.device), run.data.validation)
        for tag, p in paths.items()
        if p.exists()
    }


def table(metrics: dict) -> str:
    res = next(iter(metrics["learners"].values()))
    dpcs = sorted({d for per in res.values() for d in per if d != "all"}, key=int)
    lines = [
        "| method | sets × runs | " + " | ".join(f"DPC {d}" for d in dpcs) + " |",
        "|---|---|" + "---|" * len(dpcs),
    ]
    for method, per in res.items():
        if method == "full":
            a = per["all"]
            lines.append(
                f"| full data | 1 × {a['n']} | " + " | ".join([f"{a['mean']:.1f} ± {a['std']:.1f}"] * len(dpcs)) + " |"
            )
            continue
        first = per[dpcs[0]]
        lines.append(
            f"| {method} | {first['sets']} × {first['n'] // first['sets']} | "
            + " | ".join(f"{per[d]['mean']:.1f} ± {per[d]['std']:.1f}" for d in dpcs)
            + " |"
        )
    return "\n".join(lines)


def cell_summary(cell: dict) -> dict:
    """A method's cell with its spread over sets: `std` is the std of the per-set mean accuracies (the draws'
    spread), `std_runs` the std over all runs."""
    acc = np.asarray([r["accuracy"] for r in cell["runs"]], dtype=float)
    f1 = np.asarray([r["macro_f1"] for r in cell["runs"]], dtype=float)
    per_set = acc.reshape(cell["sets"], -1).mean(1)
    return {
        "mean": float(acc.mean()),
        "std": float(per_set.std()),
        "std_runs": float(acc.std()),
        "set_means": per_set.tolist(),
        "macro_f1": float(f1.mean()),
        "sets": cell["sets"],
        "runs": len(acc),
    }


def last_checkpoint_row(run: DiLMRun, out: Path) -> dict:
    """DiLM with the last stage-2 generator (no choice on validation), sharing the run's stage 1, in OUT/last."""
    cfg = run.cfg.model_copy(update={"methods": ["dilm"], "checkpoint": "last"})
    metrics = DiLMRun(cfg, out, stage1_from=run.out).run()
    return metrics["learners"][cfg.learner]["dilm"]


def summary(run: DiLMRun, metrics: dict, wall: float, command: str, overrides: list[str], last: dict | None) -> dict:
    """What docs/benchmarks.md renders: rows with their spread over sets, the gains of DiLM over the plain LM and
    over random subsets (2 x the baseline's std over sets, as image runs report theirs), the stage-2 checkpoints'
    validation scores and the one chosen, the full-data steps chosen on validation, the schedule and wall time."""
    from distillkit.image.evaluate import gain

    cfg, test = run.cfg, run.data.test
    res = metrics["learners"][cfg.learner]
    rows = {m: {d: cell_summary(c) for d, c in per.items()} for m, per in res.items() if m != "full"}
    if last is not None:
        rows["dilm_last"] = {d: cell_summary(c) for d, c in last.items()}
    full = res["full"]["all"] if "full" in res else None  # a run of generated sets only has no reference
    hist = read_json(run.out / "ckpt" / "stage2_history.json")
    return {
        "command": command,
        "overrides": overrides,
        "config": run.cfg.model_dump(mode="json"),
        "split_sizes": {k: v["size"] for k, v in metrics["split_sizes"].items()},
        "test_majority_rate": 100 * float(np.bincount(test.labels).max() / len(test)),
        "dpcs": [str(d) for d in cfg.dpcs],
        "rows": rows,
        "full": None
        if full is None
        else {
            **cell_summary(full),
            "selected_steps": [r["selected_step"] for r in full["runs"]],
            "steps": cfg.full_finetune.steps,
        },
        "gains": {
            d: {base: gain(rows["dilm"][d], rows[base][d]) for base in ("vanilla_lm", "random") if base in rows}
            for d in rows["dilm"]
        },
        "stage2_validation": metrics["generator_validation"],
        "stage2_steps": len(hist),
        "stage2_seconds": float(sum(h["seconds"] for h in hist)),
        "wall_seconds": wall,
        "torch_threads": torch.get_num_threads(),
        "provenance": {k: metrics["provenance"].get(k) for k in ("torch", "device", "commit")},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench_dilm"))
    ap.add_argument("--schedule", choices=sorted(SCHEDULES), default="scratch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing-steps", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--json", type=Path, help="write the summary that docs/benchmarks.md renders here")
    ap.add_argument("--last-row", action="store_true", help="also DiLM with its last stage-2 generator (OUT/last)")
    ap.add_argument(
        "--extras",
        choices=["all", "fidelity", "none"],
        default="all",
        help="after the pipeline: label fidelity and class conditioning of the generators and the GM-step timing "
        "(all), the first two (fidelity), or nothing",
    )
    ap.add_argument("--prior-seconds", type=float, default=0.0, help="time an earlier process spent on OUT's units")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (1 on a loaded CPU)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    overrides = SCHEDULES[args.schedule] + args.set
    cfg = build_config("fine_foods", "quick", seed=args.seed, overrides=overrides)
    run = DiLMRun(cfg, args.out)
    metrics = run.run()
    last = last_checkpoint_row(run, args.out / "last") if args.last_row else None
    wall = time.perf_counter() - t0 + args.prior_seconds
    print(table(metrics))
    print(f"pipeline wall time {wall / 60:.1f} min")
    extras: dict = {}
    if args.extras != "none":
        t1 = time.perf_counter()
        extras = {"label_fidelity": label_fidelity(run), "generator_conditioning": generator_conditioning(run)}
        if args.extras == "all":
            extras["gm_timing"] = time_head_grads(run, args.timing_steps)
        extras["seconds"] = time.perf_counter() - t1
        write_json(args.out / "bench.json", {"wall_seconds_pipeline": wall, **extras, "table": table(metrics)})
        print(json.dumps(extras, indent=2))
    if args.json:
        command = ".venv/bin/python bench/bench_dilm.py " + " ".join(sys.argv[1:])
        write_json(args.json, {**summary(run, metrics, wall, command, overrides, last), "extras": extras})


if __name__ == "__main__":
    main()
