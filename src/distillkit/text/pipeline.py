"""A whole DiLM run in a run directory: data, stage 1, stage 2, distilled sets, baselines, evaluation.

Layout of `out/`:
  config.json                     resolved config (resuming with another config is refused)
  generator_vanilla/, generator_dilm/   CPU-loadable HF folders (tokenizer with the added tokens; under LoRA
                                  the adapter alone); absent when `generators_from` names finished ones
  ckpt/                           stage checkpoints, validation record, best generator
  pools/<method>/set<r>/          a generated pool and its embeddings (`share_pool`); DiLM draws from the plain
                                  LM's when the two generators are the same files (stage 2 kept step 0)
  sets/<method>/dpc<d>/set<r>/    texts.jsonl, hf/, provenance.json
  results/<learner>/<method>_dpc<d>_set<r>.json   per-run test scores (a finished unit is never redone)
  metrics.json, accuracy_vs_dpc.png
Every finished unit is written atomically, so running the same command again resumes where it stopped.
Under torchrun the processes share the evaluation (one unit per method and set) and rank 0 writes the metrics;
the seeds come from the unit, so any number of processes writes what one writes, and resumes any run.
"""

from __future__ import annotations

import filecmp
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distillkit.data.text import TextDataset, TextSplits, check_dpc, load_text_dataset, subsample
from distillkit.distributed import barrier, is_main, main_first, process_group, rank_device, share
from distillkit.errors import UserError
from distillkit.report import write_report_html
from distillkit.runs import Run, read_json, save_numpy, write_json
from distillkit.seeding import derive_seed
from distillkit.text.coreset import DETERMINISTIC, SelectionEncoder, select_per_class
from distillkit.text.evaluate import evaluate_set, scores, summarize
from distillkit.text.generator import Generator
from distillkit.text.gm import GradientMatcher
from distillkit.text.icl import run_icl
from distillkit.text.learner import Learner
from distillkit.text.models import generators_dir
from distillkit.text.plot import plot_accuracy_vs_dpc
from distillkit.text.stage1 import train_stage1
from distillkit.text.synthetic import generate_pool, generate_set, load_text_set, save_text_set, select_from_pool

GENERATED = ("dilm", "vanilla_lm")


def load_splits(cfg) -> TextSplits:
    """The dataset of a config, with the configured seeded subsamples."""
    sp = load_text_dataset(
        cfg.dataset,
        seed=cfg.seed,
        path=Path(cfg.data_path) if cfg.data_path else None,
        test_path=Path(cfg.test_path) if cfg.test_path else None,
        text_columns=cfg.text_columns,
        label_column=cfg.label_column,
    )
    return TextSplits(
        subsample(sp.train, cfg.max_train, cfg.seed),
        subsample(sp.validation, cfg.max_validation, cfg.seed),
        subsample(sp.test, cfg.max_test, cfg.seed),
    )


class DiLMRun:
    """One run directory; each method is idempotent and resumable.

    `stage1_from`: another run directory (same data and stage-1 settings) whose stage-1 generator and real-text
    embeddings this run reads instead of computing its own (the trials of `distill text tune` share one stage 1).
    """

    def __init__(self, cfg, out: Path, progress: bool = True, stage1_from: Path | None = None):
        self.cfg = cfg.check()
        self.out = Path(out)
        self.progress = progress
        self.stage1_dir = Path(stage1_from) if stage1_from is not None else self.out
        torch.manual_seed(cfg.seed)
        self.data = load_splits(cfg)
        for d in cfg.dpcs:
            check_dpc(self.data.train, d)
        self.run_dir = main_first(lambda: Run(self.out, cfg.model_dump(), device=cfg.device))
        self.cfg = self.cfg.model_copy(update={"device": str(rank_device(cfg.device))})  # under torchrun: its GPU
        self._encoder: SelectionEncoder | None = None
        self._learners: dict[str, Learner] = {}
        self._real_emb: np.ndarray | None = None

    # ---- shared models ----------------------------------------------------------------------------
    @property
    def num_fields(self) -> int:
        return len(self.data.train.text_fields)

    def encoder(self) -> SelectionEncoder:
        if self._encoder is None:
            self._encoder = SelectionEncoder(
                self.cfg.encoder or self.cfg.learner, self.cfg.max_length, device=self.cfg.device
            )
        return self._encoder

    def learner(self, name: str | None = None) -> Learner:
        name = name or self.cfg.learner
        if name not in self._learners:
            self._learners[name] = Learner.load(
                name,
                self.data.train.num_classes,
                self.cfg.max_length,
                seed=self.cfg.seed,
                dropout=self.cfg.learner_dropout,
                device=self.cfg.device,
                precision=self.cfg.precision,
            )
        return self._learners[name]

    def real_embeddings(self) -> np.ndarray:
        path = self.stage1_dir / "ckpt" / "real_emb.npy"
        if self._real_emb is None:
            if path.exists():
                self._real_emb = np.load(path)
            else:
                self._real_emb = self.encoder().embed(self.data.train.texts, progress=self.progress)
                save_numpy(path, self._real_emb)
        return self._real_emb

    # ---- stage 1 and 2 ----------------------------------------------------------------------------
    def generator_dir(self, method: str) -> Path:
        """Where the generator of `method` is (or will be) saved; from `generators_from` when that is set."""
        name = "generator_dilm" if method == "dilm" else "generator_vanilla"
        if self.cfg.generators_from is not None:
            path = generators_dir(self.cfg.generators_from) / name
            if not path.exists():
                raise UserError(f"generators_from: {path} does not exist; pass a folder holding {name}/ or drop it")
            return path
        return (self.out if method == "dilm" else self.stage1_dir) / name

    def vanilla_generator(self) -> Generator:
        path = self.generator_dir("vanilla_lm")
        if path.exists():
            return Generator.load(path, self.cfg.device, self.cfg.precision)
        if self.stage1_dir != self.out:
            raise UserError(f"{self.stage1_dir} holds no finished stage 1 (generator_vanilla/); run it there first")
        gen = Generator.create(
            self.cfg.generator,
            self.data.train.num_classes,
            self.num_fields,
            self.cfg.max_length,
            seed=self.cfg.seed,
            normalize=self.cfg.normalize,
            device=self.cfg.device,
            precision=self.cfg.precision,
            texts=[" ".join(t) for t in self.data.train.texts],
            lora=self.cfg.lora,
        )
        losses = train_stage1(
            gen,
            self.data.train,
            self.cfg.stage1,
            self.cfg.seed,
            self.out / "ckpt" / "stage1.pt",
            self.progress,
        )
        write_json(self.out / "ckpt" / "stage1_losses.json", losses)
        gen.save(path)
        return gen

    def validation_accuracies(self, gen: Generator) -> list[float]:
        """Validation accuracy (%) of every fine-tuning run on sets generated at `val_dpc`.

        `val_sets` sets, each oversampled and K-means-medoid selected as the run builds them, `val_runs` fresh
        learners each; the same seeds for every generator, so checkpoints are compared on the same draws. Model
        selection (checkpoints, `distill text tune`) reads only this, never the test split.
        """
        cfg = self.cfg
        accs = []
        for r in range(cfg.val_sets):
            small = generate_set(
                gen,
                self.encoder(),
                self.data.train,
                cfg.val_dpc,
                cfg.oversample,
                derive_seed(cfg.seed, "val_eval", r),
                cfg.gen_batch_size,
            )
            runs = evaluate_set(
                self.learner(),
                small,
                self.data.validation,
                cfg.finetune,
                [derive_seed(cfg.seed, "val_eval_run", r, k) for k in range(cfg.val_runs)],
            )
            accs += [x["accuracy"] for x in runs]
        return accs

    def dilm_generator(self) -> Generator:
        path = self.generator_dir("dilm")
        if path.exists():
            return Generator.load(path, self.cfg.device, self.cfg.precision)
        cfg = self.cfg
        gen = self.vanilla_generator()
        ckdir = self.out / "ckpt"
        val_path, best_dir = ckdir / "validation.json", ckdir / "best_generator"
        record = read_json(val_path) if val_path.exists() else {"scores": {}, "best": None}

        def validate(tag: str, step: int) -> None:
            if tag in record["scores"]:
                return
            acc = float(np.mean(self.validation_accuracies(gen)))
            record["scores"][tag] = {"step": step, "validation_accuracy": acc}
            if record["best"] is None or acc > record["scores"][record["best"]]["validation_accuracy"]:
                record["best"] = tag
                gen.save(best_dir)
            write_json(val_path, record)

        if cfg.checkpoint == "best":
            validate("step0", 0)
        matcher = GradientMatcher(gen, self.learner(), self.data.train, self.real_embeddings(), cfg.gm, cfg.seed)

        def on_outer(m: GradientMatcher) -> None:
            if cfg.checkpoint == "best" and cfg.validate_every and m.ol % cfg.validate_every == 0:
                validate(f"step{m.step}", m.step)

        history = matcher.run(ckdir / "stage2.pt", self.progress, on_outer=on_outer)
        write_json(ckdir / "stage2_history.json", history)
        if cfg.checkpoint == "best":
            validate(f"step{matcher.step}", matcher.step)
            best = Generator.load(best_dir, cfg.device, cfg.precision)
            best.save(path)
            return best
        gen.save(path)
        return gen

    # ---- sets -------------------------------------------------------------------------------------
    def set_dir(self, method: str, dpc: int, r: int) -> Path:
        return self.out / "sets" / method / f"dpc{dpc}" / f"set{r}"

    def pool_owner(self, method: str) -> str:
        """The method whose pool `method` draws from: the plain LM's when DiLM's generator is byte for byte the
        plain LM's (stage 2 kept step 0), whose pool, drawn with the same seed, would be the same texts."""
        if method != "dilm" or "vanilla_lm" not in self.cfg.methods:
            return method
        return "vanilla_lm" if self.dilm_is_plain_lm else method

    @functools.cached_property
    def dilm_is_plain_lm(self) -> bool:
        """Whether the saved DiLM generator is the same files as the plain LM's (compared once, in chunks)."""
        ours, plain = self.generator_dir("dilm"), self.generator_dir("vanilla_lm")
        files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
        return files == sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file()) and all(
            filecmp.cmp(ours / f, plain / f, shallow=False) for f in files
        )

    def shared_pool(self, method: str, r: int, gen: Generator) -> tuple[TextDataset, np.ndarray]:
        """One generated pool per (generator, set), oversample x max DPC per class, saved with its embeddings."""
        method = self.pool_owner(method)
        path = self.out / "pools" / method / f"set{r}"
        if (path / "provenance.json").exists() and (path / "emb.npy").exists():
            return load_text_set(path), np.load(path / "emb.npy")
        cfg = self.cfg
        pool = generate_pool(
            gen,
            self.data.train,
            cfg.oversample * max(cfg.dpcs),
            derive_seed(cfg.seed, "generate_set", r),
            cfg.gen_batch_size,
            self.progress,
        )
        emb = self.encoder().embed(pool.texts, progress=self.progress)
        prov = {
            "method": method,
            "set": r,
            "label_names": pool.label_names,
            "text_fields": pool.text_fields,
            "dataset": cfg.dataset,
            "metric": pool.metric,
        }
        save_text_set(pool, path, prov)
        save_numpy(path / "emb.npy", emb)
        return pool, emb

    def n_sets(self, method: str) -> int:
        return 1 if method in DETERMINISTIC else self.cfg.num_sets

    def build_set(self, method: str, dpc: int, r: int, gen: Generator | None = None) -> TextDataset:
        path = self.set_dir(method, dpc, r)
        if (path / "provenance.json").exists():
            return load_text_set(path)
        cfg = self.cfg
        seed = derive_seed(cfg.seed, "coreset_set", r)
        train = self.data.train
        prov: dict[str, Any] = {
            "method": method,
            "dpc": dpc,
            "set": r,
            "seed": seed,
            "dataset": cfg.dataset,
            "label_names": train.label_names,
            "text_fields": train.text_fields,
            "metric": train.metric,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if method in GENERATED:
            assert gen is not None
            if cfg.share_pool:
                pool, emb = self.shared_pool(method, r, gen)
                small = select_from_pool(pool, emb, dpc, seed)
            else:
                small = generate_set(
                    gen, self.encoder(), train, dpc, cfg.oversample, seed, cfg.gen_batch_size, self.progress
                )
            prov.update(
                shared_pool=cfg.share_pool,
                pool_of=self.pool_owner(method) if cfg.share_pool else None,
                generator=cfg.generator,
                generator_checkpoint=str(self.generator_dir(method)),
                oversample=cfg.oversample,
                selection="kmeans_medoid",
                selection_encoder=cfg.encoder or cfg.learner,
                checkpoint=cfg.checkpoint,
            )
        else:
            idx = select_per_class(method, self.real_embeddings(), train.labels, dpc, seed)
            small = train.subset(idx)
            prov.update(train_indices=idx.tolist(), selection_encoder=cfg.encoder or cfg.learner)
        small.meta = prov
        save_text_set(small, path, prov)
        return small

    # ---- evaluation -------------------------------------------------------------------------------
    def result_name(self, learner: str, key: str) -> str:
        return f"results/{learner.replace('/', '_')}/{key}.json"

    def evaluate(self, method: str, dpc: int, r: int, small: TextDataset, learner: str) -> list[dict[str, Any]]:
        cfg = self.cfg
        runs_per_set = cfg.runs_per_set * (cfg.num_sets if method in DETERMINISTIC else 1)
        seeds = [derive_seed(cfg.seed, "eval_run", r, k) for k in range(runs_per_set)]
        return self.run_dir.cached(
            self.result_name(learner, f"{method}_dpc{dpc}_set{r}"),
            lambda: evaluate_set(
                self.learner(learner), small, self.data.test, cfg.finetune, seeds, self.data.validation
            ),
        )

    def evaluate_full(self, learner: str) -> list[dict[str, Any]]:
        seeds = [derive_seed(self.cfg.seed, "full_run", k) for k in range(self.cfg.full_runs)]
        return self.run_dir.cached(
            self.result_name(learner, "full"),
            lambda: evaluate_set(
                self.learner(learner),
                self.data.train,
                self.data.test,
                self.cfg.full_finetune,
                seeds,
                self.data.validation,
            ),
        )

    def generators(self) -> dict[str, Generator]:
        """The generators the methods need (trained on first use), and the real-text embeddings for coresets."""
        cfg = self.cfg
        gens: dict[str, Generator] = {}
        if "vanilla_lm" in cfg.methods or "dilm" in cfg.methods:
            gens["vanilla_lm"] = self.vanilla_generator()
        if "dilm" in cfg.methods:
            gens["dilm"] = self.dilm_generator()
        if any(m not in (*GENERATED, "full") for m in cfg.methods):
            self.real_embeddings()
        return gens

    def units(self) -> list[tuple[str, int]]:
        """The independent pieces of evaluation: (method, set r), each set at every DPC (a shared pool serves
        them all) scored by every learner; ("full", 0) for the full training set."""
        cfg = self.cfg
        units = [(m, r) for m in cfg.methods if m != "full" for r in range(self.n_sets(m))]
        return units + ([("full", 0)] if "full" in cfg.methods else [])

    def unit_files(self, method: str, r: int) -> list[Path]:
        """The result files of one unit; all present means it is done."""
        keys = ["full"] if method == "full" else [f"{method}_dpc{dpc}_set{r}" for dpc in self.cfg.dpcs]
        learners = [self.cfg.learner, *self.cfg.eval_learners]
        return [self.run_dir.path(self.result_name(learner, key)) for learner in learners for key in keys]

    def compute_unit(self, method: str, r: int, gens: dict[str, Generator]) -> None:
        for learner in [self.cfg.learner, *self.cfg.eval_learners]:
            if method == "full":
                self.evaluate_full(learner)
                continue
            for dpc in self.cfg.dpcs:
                self.evaluate(method, dpc, r, self.build_set(method, dpc, r, gens.get(method)), learner)

    def run(self) -> dict[str, Any] | None:
        """Everything the config asks for; returns (and writes) metrics.json.

        Under torchrun rank 0 trains the generators first (the other ranks then load them), the units of
        evaluation are shared over the processes (`distributed.share`), each written to its result files, and
        rank 0 writes metrics.json once all are done; the other ranks return None.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        gens = main_first(self.generators)
        for method, r in share(self.units(), lambda u: all(p.exists() for p in self.unit_files(*u))):
            self.compute_unit(method, r, gens)
        barrier()
        if not is_main():
            return None
        learners = [cfg.learner, *cfg.eval_learners]
        metric = "combined_score" if self.data.test.metric == "combined_score" else "accuracy"
        results: dict[str, Any] = {}
        for learner in learners:
            res: dict[str, Any] = {m: {} for m in cfg.methods}
            for dpc in cfg.dpcs:  # DPC outer: the first DPC listed is finished for every method first
                for method in (m for m in cfg.methods if m != "full"):
                    runs = []
                    for r in range(self.n_sets(method)):
                        small = self.build_set(method, dpc, r, gens.get(method))
                        runs += self.evaluate(method, dpc, r, small, learner)
                    res[method][str(dpc)] = {
                        **summarize(runs, metric),
                        "sets": self.n_sets(method),
                        "runs": runs,
                    }
            if "full" in cfg.methods:
                runs = self.evaluate_full(learner)
                res["full"] = {"all": {**summarize(runs, metric), "runs": runs, "sets": 1}}
            results[learner] = res
        metrics = {
            "dataset": cfg.dataset,
            "metric": metric,
            "learners": results,
            "split_sizes": self.data.summary(),
            "checkpoint": cfg.checkpoint,
            "normalize": cfg.normalize,
            "seconds": time.perf_counter() - t0,
        }
        val = self.out / "ckpt" / "validation.json"
        if val.exists():
            metrics["generator_validation"] = read_json(val)
        hist = self.out / "ckpt" / "stage2_history.json"
        if hist.exists():
            h = read_json(hist)
            metrics["gm_seconds_per_step"] = float(np.mean([x["seconds"] for x in h])) if h else None
        if cfg.icl is not None:
            metrics["icl"] = run_icl(self, cfg.icl)
        metrics = self.run_dir.write_metrics(metrics)
        if len(cfg.dpcs) >= 1:
            plot_accuracy_vs_dpc(metrics, self.out / "accuracy_vs_dpc.png")
        write_report_html(self.out)
        return metrics


def run_dilm(cfg, out: Path, progress: bool = True) -> dict[str, Any] | None:
    """Run (or resume) a DiLM experiment in `out`; under torchrun every process calls this (see `DiLMRun.run`)."""
    with process_group(cfg.device):
        return DiLMRun(cfg, out, progress).run()


def score_texts(learner: Learner, ds: TextDataset) -> dict[str, float]:
    return scores(learner.predict(ds.texts), ds.labels, ds.metric)
