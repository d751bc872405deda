"""What DiLM's stage 2 (gradient matching) does, step by step, at several generator learning rates.

    .venv/bin/python bench/bench_dilm_stage2.py --out runs/bench_dilm_stage2

Stage 1 is the scaled `scratch` schedule of bench_dilm.py (trained once, in OUT/base, resumable). From that
vanilla generator, stage 2 runs once per `--lrs` value (same seed, same batches, the bench's schedule
otherwise); after every outer loop (and before the first) the generator is measured on data fixed in advance:

- matching loss, mean over classes of 1 - cos(g_real, g_syn) of the learner's head gradient, averaged over
  fixed learner states (fresh heads and heads trained a few steps on real data) and fixed real batches drawn
  at random from the training split (`train`) or the validation split (`validation`); two synthetic sides:
  `objective`: fixed texts sampled once from the vanilla generator, weighted by softmax(-loss) under the
  current generator (exactly the surrogate stage 2 descends, on batches it never saw);
  `fresh`: texts sampled from the current generator, uniform weights (what a distilled set's gradient is);
- label fidelity of `--samples` fresh texts per class, as judged by a logistic-regression probe on the
  selection encoder's embeddings and by the learner head fitted on the whole training split (fraction whose
  predicted class is the prompted class; equal counts per class, so also the balanced accuracy);
- distinct-1/2 of those texts, the generator's validation LM loss and its accuracy as a generative classifier;
- after the last loop, validation accuracy of DPC-10 sets built from the generator (`--dpc-sets` sets x 2 runs).
The test split is not read. OUT/stage2.json holds everything; `--json` writes the summary for the docs.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_dilm import SCHEDULES, class_conditioning

from distillkit.data.text import TextDataset
from distillkit.runs import write_json
from distillkit.seeding import derive_seed, numpy_rng
from distillkit.text.api import build_config
from distillkit.text.evaluate import evaluate_set, finetune
from distillkit.text.generator import Generator
from distillkit.text.gm import GMConfig, GradientMatcher
from distillkit.text.learner import Learner
from distillkit.text.pipeline import DiLMRun
from distillkit.text.synthetic import generate_pool, select_from_pool

LEARNER_STEPS = (0, 5, 20)  # head steps on real data before a matching-loss reading (stage 2 spans 0..20)
LEARNER_SEEDS = (101, 202)
REAL_BATCHES = 4
SYN_BATCHES = 4


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over lower-cased whitespace tokens of all `texts` (0 when none)."""
    grams = [tuple(toks[i : i + n]) for t in texts for toks in [t.lower().split()] for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def matching_distance(g_real: torch.Tensor, per_sample: torch.Tensor, weights: torch.Tensor) -> float:
    """1 - cos(g_real, weights @ per_sample): the stage-2 distance for one class."""
    return float(1 - F.cosine_similarity(g_real, weights @ per_sample, dim=0))


class Probe:
    """Fixed measurement material: learner head states, real batches, vanilla-generated batches, judges."""

    def __init__(self, run: DiLMRun, vanilla: Generator, samples: int, seed: int):
        from sklearn.linear_model import LogisticRegression

        self.run, self.cfg, self.samples, self.seed = run, run.cfg, samples, seed
        train, val = run.data.train, run.data.validation
        self.C = train.num_classes
        self.learner = Learner.load(self.cfg.learner, self.C, self.cfg.max_length, seed=self.cfg.seed)
        self.learner.reset(0)
        self.feats = {
            "train": self.learner.cached_features(train.texts),
            "validation": self.learner.cached_features(val.texts),
        }
        self.heads = self._learner_heads(train)
        self.real = {
            split: {
                c: [
                    numpy_rng(seed, f"stage2_probe_real_{split}", c, b).choice(
                        np.flatnonzero(ds.labels == c),
                        size=min(self.cfg.gm.real_batch, int((ds.labels == c).sum())),
                        replace=False,
                    )
                    for b in range(REAL_BATCHES)
                ]
                for c in range(self.C)
            }
            for split, ds in (("train", train), ("validation", val))
        }
        k = self.cfg.gm.syn_batch
        self.fixed_syn = {
            c: vanilla.sample(c, k * SYN_BATCHES, seed=derive_seed(seed, "stage2_probe_fixed", c))
            for c in range(self.C)
        }
        self.fixed_feats = {c: self.feat(t) for c, t in self.fixed_syn.items()}
        self.probe = LogisticRegression(max_iter=2000, class_weight="balanced").fit(run.real_embeddings(), train.labels)
        finetune(self.learner, train, self.cfg.full_finetune, seed=0)
        self.judge = copy.deepcopy(self.learner.head)
        self.ceilings = {
            "probe": self.balanced(self.probe.predict(run.encoder().embed(val.texts)), val.labels),
            "judge": self.balanced(self.judge_predict(val.texts), val.labels),
        }

    @staticmethod
    def balanced(pred: np.ndarray, gold: np.ndarray) -> float:
        return 100 * float(np.mean([(pred[gold == c] == c).mean() for c in np.unique(gold)]))

    def feat(self, texts: list[tuple[str, ...]]) -> torch.Tensor:
        return self.learner.cached_features(texts)

    def judge_predict(self, texts: list[tuple[str, ...]]) -> np.ndarray:
        with torch.no_grad():
            return self.judge(self.feat(texts)).argmax(-1).numpy()

    def _learner_heads(self, train: TextDataset) -> list[dict[str, torch.Tensor]]:
        """Head weights after 0/5/20 head-only steps on random real batches, as stage 2's learner sees them."""
        gm, heads = self.cfg.gm, []
        labels = torch.as_tensor(train.labels)
        for s in LEARNER_SEEDS:
            self.learner.reset(s)
            opt = torch.optim.AdamW(self.learner.head_params(), lr=gm.learner_lr, weight_decay=0.01)
            for step in range(max(LEARNER_STEPS) + 1):
                if step in LEARNER_STEPS:
                    heads.append(copy.deepcopy(self.learner.head.state_dict()))
                idx = numpy_rng(self.seed, "stage2_probe_learner", s, step).choice(
                    len(train), gm.learner_batch, replace=False
                )
                loss = F.cross_entropy(self.learner.head(self.feats["train"][idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return heads

    def grads(self, feats: torch.Tensor, c: int) -> torch.Tensor:
        return self.learner.per_sample_head_grads(feats, torch.full((len(feats),), c, dtype=torch.long))

    @torch.no_grad()
    def weights(self, gen: Generator, texts: list[tuple[str, ...]], c: int) -> torch.Tensor:
        was = gen.model.training
        gen.model.eval()
        w = F.softmax(-gen.per_sample_loss(texts, [c] * len(texts)) / self.cfg.gm.tau, 0)
        gen.model.train(was)
        return w

    def matching(self, gen: Generator, fresh: dict[int, list[tuple[str, ...]]]) -> dict[str, float]:
        """Mean matching distance per (split, synthetic side) over learner states x real x synthetic batches."""
        k = self.cfg.gm.syn_batch
        syn: dict[str, dict[int, list[tuple[torch.Tensor, torch.Tensor]]]] = {"objective": {}, "fresh": {}}
        for c in range(self.C):
            for b in range(SYN_BATCHES):
                part = slice(b * k, (b + 1) * k)
                syn["objective"].setdefault(c, []).append(
                    (self.fixed_feats[c][part], self.weights(gen, self.fixed_syn[c][part], c))
                )
            ff = self.feat(fresh[c])
            syn["fresh"][c] = [
                (ff[i : i + k], torch.full((len(ff[i : i + k]),), 1 / len(ff[i : i + k])))
                for i in range(0, len(ff) - k + 1, k)
            ]
        return self.distances(syn, ("train", "validation"))

    def distances(self, syn: dict, splits: Sequence[str]) -> dict[str, float]:
        """Mean matching distance per (real split, synthetic side) over learner states x batches x classes."""
        out: dict[str, list[float]] = {}
        for head in self.heads:
            self.learner.head.load_state_dict(head)
            for split in splits:
                for side, batches in syn.items():
                    vals = []
                    for c in range(self.C):
                        g_reals = [self.grads(self.feats[split][idx], c).mean(0) for idx in self.real[split][c]]
                        for f, w in batches[c]:
                            per = self.grads(f, c)
                            vals += [matching_distance(g, per, w) for g in g_reals]
                    out.setdefault(f"{split}_{side}", []).append(float(np.mean(vals)))
        return {k: float(np.mean(v)) for k, v in out.items()}

    def references(self) -> dict[str, float]:
        """Real-vs-real distances (train real batches vs validation batches): same class (the noise floor)
        and the other class's texts labelled as this class (what a class-blind set would score)."""
        f, k = self.feats["validation"], self.cfg.gm.syn_batch

        def side(shift: int) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
            out = {}
            for c in range(self.C):
                idx = [i[:k] for i in self.real["validation"][(c + shift) % self.C]]
                out[c] = [(f[i], torch.full((len(i),), 1 / len(i))) for i in idx]
            return out

        d = self.distances({"same_class": side(0), "other_class": side(1)}, ("train",))
        states = [f"seed {s}, {k} head steps" for s in LEARNER_SEEDS for k in LEARNER_STEPS]
        for name, head in zip(states, self.heads, strict=True):
            keep = self.heads
            self.heads = [head]
            d[name] = self.distances({"same_class": side(0), "other_class": side(1)}, ("train",))
            self.heads = keep
        feats, labels = self.feats["train"], self.run.data.train.labels
        means = [feats[torch.as_tensor(labels == c)].mean(0) for c in range(self.C)]
        d["cos_class_mean_features"] = float(F.cosine_similarity(means[0], means[1], dim=0))
        return d

    def measure(self, gen: Generator, tag: str) -> dict:
        """All per-checkpoint readings of one generator."""
        t0 = time.perf_counter()
        fresh = {
            c: gen.sample(c, self.samples, seed=derive_seed(self.seed, "stage2_probe_fresh", c)) for c in range(self.C)
        }
        texts = [t for c in range(self.C) for t in fresh[c]]
        gold = np.repeat(np.arange(self.C), self.samples)
        flat = [" ".join(t) for t in texts]
        val = self.run.data.validation
        with torch.no_grad():
            was = gen.model.training
            gen.model.eval()
            lm = torch.cat(
                [
                    gen.per_sample_loss(val.texts[i : i + 50], val.labels[i : i + 50].tolist())
                    for i in range(0, len(val), 50)
                ]
            )
            gen.model.train(was)
        out = {
            "tag": tag,
            "matching": self.matching(gen, fresh),
            "fidelity_probe": self.balanced(self.probe.predict(self.run.encoder().embed(texts)), gold),
            "fidelity_judge": self.balanced(self.judge_predict(texts), gold),
            "distinct_1": distinct_n(flat, 1),
            "distinct_2": distinct_n(flat, 2),
            "validation_lm_loss": float(lm.mean()),
            "conditioning": class_conditioning(gen, val),
        }
        out["seconds"] = time.perf_counter() - t0
        return out

    def downstream(self, gen: Generator, dpc: int, sets: int) -> dict:
        """Validation accuracy and macro-F1 of DPC-`dpc` sets (pool 10 x DPC per class, K-means medoids)."""
        cfg, runs = self.cfg, []
        for r in range(sets):
            pool = generate_pool(
                gen,
                self.run.data.train,
                cfg.oversample * dpc,
                derive_seed(self.seed, "stage2_set", r),
                cfg.gen_batch_size,
            )
            small = select_from_pool(
                pool, self.run.encoder().embed(pool.texts), dpc, derive_seed(self.seed, "stage2_select", r)
            )
            runs += evaluate_set(
                self.learner,
                small,
                self.run.data.validation,
                cfg.finetune,
                [derive_seed(self.seed, "stage2_eval", r, k) for k in range(2)],
            )
        return downstream_summary(dpc, runs)


def downstream_summary(dpc: int, runs: list[dict]) -> dict:
    """Mean and std of validation accuracy and macro-F1 over the fine-tuning runs on DPC-`dpc` sets."""
    acc, f1 = (np.asarray([x[key] for x in runs]) for key in ("accuracy", "macro_f1"))
    return {
        "dpc": dpc,
        "runs": len(runs),
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "macro_f1": float(f1.mean()),
        "macro_f1_std": float(f1.std()),
    }


def random_downstream(probe: Probe, dpc: int, sets: int) -> dict:
    """The same evaluation on random real DPC-`dpc` subsets of the training split (the reference)."""
    train, runs = probe.run.data.train, []
    for r in range(sets):
        rng = numpy_rng(probe.seed, "stage2_random_set", r)
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(train.labels == c), dpc, replace=False) for c in range(train.num_classes)]
        )
        runs += evaluate_set(
            probe.learner,
            train.subset(idx),
            probe.run.data.validation,
            probe.cfg.finetune,
            [derive_seed(probe.seed, "stage2_eval", r, k) for k in range(2)],
        )
    return downstream_summary(dpc, runs)


def stage2(run: DiLMRun, probe: Probe, lr: float, outer_loops: int | None) -> dict:
    """Stage 2 from the vanilla generator at learning rate `lr`, measured after every outer loop."""
    gen = Generator.load(run.out / "generator_vanilla", run.cfg.device)
    gm = GMConfig(**{**asdict(run.cfg.gm), "lr": lr, **({"outer_loops": outer_loops} if outer_loops else {})})
    learner = run.learner()
    matcher = GradientMatcher(gen, learner, run.data.train, run.real_embeddings(), gm, run.cfg.seed)
    start = [p.detach().clone() for p in gen.model.parameters()]
    checkpoints = [{"step": 0, **probe.measure(gen, "step0")}]

    def on_outer(m: GradientMatcher) -> None:
        drift = torch.sqrt(
            sum(((p.detach() - q) ** 2).sum() for p, q in zip(gen.model.parameters(), start, strict=True))
        )
        checkpoints.append({"step": m.step, "parameter_drift": float(drift), **probe.measure(gen, f"step{m.step}")})

    t0 = time.perf_counter()
    history = matcher.run(None, progress=False, on_outer=on_outer)
    return {
        "lr": lr,
        "steps": matcher.step,
        "history": history,
        "checkpoints": checkpoints,
        "seconds": time.perf_counter() - t0,
        "final": gen,
    }


def merge(outs: list[Path], dest: Path) -> None:
    """One summary JSON from runs in several OUT folders (same stage 1 and probe); runs sorted by lr, descending."""
    from distillkit.runs import read_json

    parts = [read_json(o / "stage2.json") for o in outs if (o / "stage2.json").exists()]
    merged = {k: v for k, v in parts[0].items() if k not in ("runs", "wall_seconds")}
    merged["wall_seconds"] = [p.get("wall_seconds") for p in parts]
    merged["vanilla_dpc10"] = next((p["vanilla_dpc10"] for p in parts if p.get("vanilla_dpc10")), None)
    runs = [r for p in parts for r in p["runs"]]
    refs = [o / "references.json" for o in outs if (o / "references.json").exists()]
    if refs:
        merged["setup"]["reference_distances"] = read_json(refs[0])
    merged["runs"] = [{k: v for k, v in r.items() if k != "history"} for r in sorted(runs, key=lambda r: -r["lr"])]
    for r, full in zip(merged["runs"], sorted(runs, key=lambda r: -r["lr"]), strict=True):
        r["matching_loss_per_step"] = [h["loss"] for h in full["history"]]
    write_json(dest, {k: v for k, v in merged.items() if v is not None})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/bench_dilm_stage2"))
    ap.add_argument("--json", type=Path, default=None, help="summary JSON for the docs (bench/results/...)")
    ap.add_argument("--lrs", default="1e-4,5e-6,3e-7")
    ap.add_argument("--outer-loops", type=int, default=None, help="default: the schedule's")
    ap.add_argument("--samples", type=int, default=100, help="generated texts per class per checkpoint")
    ap.add_argument("--dpc-sets", type=int, default=3, help="DPC-10 sets per generator (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", type=Path, default=None, help="stage-1 run folder (default OUT/base; shareable)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge these OUT folders into --json")
    ap.add_argument("--references-only", action="store_true", help="only the real-vs-real distances per learner state")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.json)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = build_config("fine_foods", "quick", seed=args.seed, overrides=SCHEDULES["scratch"])
    run = DiLMRun(cfg, args.base or args.out / "base", progress=False)
    vanilla = run.vanilla_generator()
    probe = Probe(run, vanilla, args.samples, args.seed)
    if args.references_only:
        write_json(args.out / "references.json", probe.references())
        return
    result: dict = {
        "setup": {
            "schedule": "bench_dilm.py scratch (scratch-gpt2 generator, MiniLM learner, head-only learner steps)",
            "train": len(run.data.train),
            "validation": len(run.data.validation),
            "gm": {k: v for k, v in asdict(cfg.gm).items() if k != "lr"},
            "outer_loops": args.outer_loops or cfg.gm.outer_loops,
            "samples_per_class": args.samples,
            "learner_states": [f"seed {s}, {k} head steps" for s in LEARNER_SEEDS for k in LEARNER_STEPS],
            "real_batches_per_class": REAL_BATCHES,
            "fixed_syn_batches_per_class": SYN_BATCHES,
            "judge_ceilings_validation": probe.ceilings,
            "reference_distances": probe.references(),
            "paper_lr": GMConfig().lr,
        },
        "runs": [],
    }
    if args.dpc_sets:
        result["random_dpc10"] = random_downstream(probe, 10, args.dpc_sets)
    for lr in (float(x) for x in args.lrs.split(",")):
        res = stage2(run, probe, lr, args.outer_loops)
        gen = res.pop("final")
        if args.dpc_sets:
            res["dpc10_final"] = probe.downstream(gen, 10, args.dpc_sets)
            if not result.get("vanilla_dpc10"):
                result["vanilla_dpc10"] = probe.downstream(vanilla, 10, args.dpc_sets)
        result["runs"].append(res)
        write_json(args.out / "stage2.json", result)
        last = res["checkpoints"][-1]
        print(f"lr {lr:g}: {res['seconds']:.0f}s, matching {last['matching']}, judge {last['fidelity_judge']:.1f}")
    result["wall_seconds"] = time.perf_counter() - t0
    write_json(args.out / "stage2.json", result)
    if args.json:
        write_json(
            args.json,
            {
                k: v if k != "runs" else [{kk: vv for kk, vv in r.items() if kk != "history"} for r in v]
                for k, v in result.items()
            },
        )
    print(f"wall {result['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
