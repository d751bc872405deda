"""`distill image compare`: several distillation methods, one teacher pool, one evaluator, one table.

Every method builds its set at every IPC into `sets/<method>_ipc<k>/` (timed, peak memory measured, and
resumable); every set is then trained on by fresh networks under each label mode (teacher soft labels
with the evaluation loss, and hard labels with CE), beside a random real subset under the same labels, as
DD-Ranking asks; cross-architecture rows evaluate the same sets on other networks. Each finished
evaluation is kept in `evals/`, so an interrupted comparison resumes where it stopped.

Under torchrun the work is shared over the processes (`distillkit.distributed`): the pools' networks, then the
sets (one per method and IPC), then the evaluations (one per set, network and label mode, plus the random
baselines and the full-data reference), each phase's unfinished items dealt round-robin. Every item is seeded
by what it is, never by the process computing it, and lands in the same file a single process writes; rank 0
writes the tables once all are done. A run stopped part-way resumes with any number of processes.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from distillkit.data.config import DataConfig
from distillkit.devices import DEVICE_HELP, resolve_device, tf32
from distillkit.distributed import barrier, is_main, main_first, process_group, rank_device, share
from distillkit.errors import UserError
from distillkit.image.apm import APMConfig
from distillkit.image.distilled import DistilledSet
from distillkit.image.dm import DMConfig
from distillkit.image.evaluate import EvalConfig, FullDataConfig, evaluate_full, evaluate_random, evaluate_set, gain
from distillkit.image.experts import EXPERT_POOL, ExpertConfig, Experts, train_experts
from distillkit.image.memory import PeakMemory
from distillkit.image.methods import BUILDERS, NEEDS_EXPERTS, BuildContext
from distillkit.image.mtt import MTTConfig
from distillkit.image.pools import pool_identity
from distillkit.image.presets import PAPER, compare_preset, with_compare_rows
from distillkit.image.teacher import TEACHER_POOL, TeacherConfig, TeacherPool, train_pool
from distillkit.nets import canonical_arch
from distillkit.plots import accuracy_lines, cost_bars, cross_arch_bars, image_grid
from distillkit.report import write_report_html
from distillkit.runs import Run, read_json, write_json
from distillkit.seeding import seeded
from distillkit.settings import merge_settings, validate

METHODS = tuple(BUILDERS)
WHAT_TO_COMPUTE = ("methods", "ipcs", "label_modes", "cross_archs")  # each cell cached apart


class CompareConfig(BaseModel):
    """Methods, IPCs, the shared data/teacher/evaluator, and each method's own settings."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "quick"
    paper_row: str | None = Field(None, description="the APM Table A9 row a paper preset used")
    baseline_rows: dict[str, str] | None = Field(None, description="the MTT and DM table rows a paper preset used")
    seed: int = 0
    device: str = Field("auto", description=DEVICE_HELP)
    tf32: bool = Field(False, description="TF32 matmuls and convolutions on CUDA (faster, ~1e-3 relative error)")
    methods: list[str] = Field(default_factory=lambda: ["apm", "mtt", "dm", "herding", "random"])
    ipcs: list[int] = Field(default_factory=lambda: [1, 10])
    label_modes: list[Literal["soft", "hard"]] = Field(default_factory=lambda: ["soft", "hard"])
    cross_archs: list[str] = Field(default_factory=list, description="networks evaluated beside eval.arch")
    cross_arch_label: Literal["soft", "hard"] = "soft"
    cross_arch_options: dict[str, dict] = Field(default_factory=dict, description="net_options per network")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    apm: APMConfig = Field(default_factory=APMConfig)
    dm: DMConfig = Field(default_factory=DMConfig)
    experts: ExpertConfig = Field(default_factory=ExpertConfig)
    mtt: MTTConfig = Field(default_factory=MTTConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    full: FullDataConfig = Field(default_factory=FullDataConfig)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not v:
            raise ValueError("no methods given")
        return v

    @field_validator("cross_archs")
    @classmethod
    def _known_archs(cls, v: list[str]) -> list[str]:
        return [canonical_arch(a) for a in v]


def compare_settings(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings for a comparison; `paper` adds the rows of Table A9, MTT's and DM's tables for the
    dataset and the largest IPC."""
    base = compare_preset(preset)
    if preset == PAPER:
        dataset = overrides.get("data", {}).get("dataset", DataConfig().dataset)
        ipcs = overrides.get("ipcs") or CompareConfig().ipcs
        base = with_compare_rows(base, str(dataset), max(int(i) for i in ipcs), overrides)
        for section in ("dm", "experts"):  # the baselines distil with the row's network too
            base[section].setdefault("arch", base["teacher"].get("arch", "convnet"))
    return base


def make_compare_config(preset: str = "quick", overrides: dict[str, Any] | None = None) -> CompareConfig:
    """A comparison config from a preset (the `distill image run` presets plus DM and MTT settings)."""
    overrides = overrides or {}
    base = compare_settings(preset, overrides)
    arch = overrides.get("teacher", {}).get("arch")
    if arch:  # every method distils with the teacher's network; the preset's ConvNet width does not carry over
        for section in ("teacher", "eval", "dm", "experts"):
            if "net_options" not in overrides.get(section, {}):
                base[section].pop("net_options", None)
        for section in ("dm", "experts"):
            base[section].setdefault("arch", arch)
    cfg = validate(CompareConfig, merge_settings({"preset": preset, **base}, overrides))
    for section in (cfg.teacher, cfg.apm, cfg.dm, cfg.experts, cfg.mtt, cfg.eval):
        section.seed = cfg.seed
    if "arch" not in overrides.get("eval", {}):
        cfg.eval.arch = cfg.teacher.arch
    return cfg


class Comparison:
    """One comparison run directory: builds sets, evaluates them, writes tables and plots."""

    def __init__(self, cfg: CompareConfig, out: Path, teachers: Path | None = None, experts: Path | None = None):
        self.device = str(rank_device(resolve_device(cfg.device)))
        self.data = cfg.data.load(cfg.seed)  # bad data or IPCs are refused before --out is touched
        self.data.check_ipc(*cfg.ipcs)
        # the data and the pools from elsewhere: the run records what they hold, not only where they are
        config = cfg.model_dump() | {"data_sha256": self.data.digest()}
        if teachers is not None:
            config["teacher_pool"] = pool_identity(teachers, TEACHER_POOL)
        if experts is not None:
            config["expert_pool"] = pool_identity(experts, EXPERT_POOL)
        self.cfg = cfg
        self.run_dir = main_first(lambda: Run(Path(out), config, extendable=WHAT_TO_COMPUTE, device=self.device))
        self.out = self.run_dir.dir
        self.pool = self._pool(teachers)
        self.label_net = self.pool.nets[cfg.apm.label_teacher]
        self.experts_dir = experts
        self._experts: Experts | None = None

    def _pool(self, teachers: Path | None) -> TeacherPool:
        pool_dir = Path(teachers) if teachers else self.out / "teachers"
        if teachers is None:
            train_pool(self.data, self.cfg.teacher, pool_dir, self.device)
        pool = TeacherPool(pool_dir, self.device)
        pool.check_matches(self.data)
        want, have = canonical_arch(self.cfg.teacher.arch), pool.metas[0]["arch"]
        if want != have:
            raise UserError(
                f"the teacher pool holds {have} networks but the comparison uses {want}; "
                f"pass --arch {have} or train a {want} pool"
            )
        return pool

    def experts(self) -> Experts:
        """The expert trajectories: given, or trained into OUT/experts on first use (under torchrun by every
        process together, so every process calls this first)."""
        if self._experts is None:
            path = self.experts_dir or self.out / "experts"
            if self.experts_dir is None:
                train_experts(self.data, self.cfg.experts, path, self.device)
            self._experts = Experts(path, self.device)
            self._experts.check_matches(self.data)
        return self._experts

    def set_files(self, method: str, ipc: int) -> tuple[Path, Path]:
        """Where the set of `method` at `ipc` and its cost are kept; both present means it is built."""
        run_dir = self.out / "sets" / f"{method}_ipc{ipc}"
        return run_dir / "distilled.safetensors", run_dir / "cost.json"

    def built(self, method: str, ipc: int) -> bool:
        return all(p.exists() for p in self.set_files(method, ipc))

    def build(self, method: str, ipc: int) -> tuple[DistilledSet, dict]:
        """The set of `method` at `ipc` (built once, then loaded), and its cost: seconds and peak memory."""
        path, cost_path = self.set_files(method, ipc)
        if self.built(method, ipc):
            return DistilledSet.load(path), read_json(cost_path)
        run_dir, device = path.parent, self.device
        experts = self.experts() if method in NEEDS_EXPERTS else None
        ctx = BuildContext(self.cfg, self.pool, self.label_net, device, experts)
        start = time.perf_counter()
        with PeakMemory(device, interval=0.001) as pm, seeded(self.cfg.seed, f"compare:{method}_ipc{ipc}"):
            ds = BUILDERS[method](self.data, ctx, ipc, run_dir)
        seconds = ds.meta.get("distill_seconds") or time.perf_counter() - start
        cost = {"seconds": seconds, "peak_mb": pm.peak_mb, "memory": pm.method, "device": device}
        ds.save(path)
        image_grid(self.data.denormalise(ds.images), ds.labels, self.data.classes, run_dir / "grid.png")
        write_json(cost_path, cost)
        return ds, cost

    def eval_cfg(self, arch: str, label: str) -> EvalConfig:
        e = self.cfg.eval
        options = (
            e.net_options
            if canonical_arch(arch) == canonical_arch(e.arch)
            else self.cfg.cross_arch_options.get(canonical_arch(arch), {})
        )
        loss = e.loss if label == "soft" else "ce"
        if label == "soft" and loss == "ce":
            loss = "l1"
        return e.model_copy(update={"arch": arch, "net_options": options, "label_mode": label, "loss": loss})

    def cached(self, name: str, fn: Callable[[], dict]) -> dict:
        """The evaluation result `name` (e.g. `evals/full.json`): read, or computed under its own seed and kept."""

        def compute() -> dict:
            with seeded(self.cfg.seed, f"compare:{name}"):  # whatever draws from the global RNG, e.g. dropout
                return fn()

        return self.run_dir.cached(name, compute, timed=True)

    def evaluate(
        self, name: str, ds: DistilledSet, ipc: int, arch: str, label: str, split: Literal["test", "val"] = "test"
    ) -> dict:
        """`ds` scored by the evaluator on the test split, or on the validation split (for choosing anything)."""
        ec = self.eval_cfg(arch, label)
        key = eval_key(name, ipc, arch, label, split)
        data = self.data.validation_view() if split == "val" else self.data
        return self.cached(
            f"evals/{key}.json",
            lambda: evaluate_set(ds.images, ds.labels, ds.soft_labels, data, ec, self.device, f"eval {key}"),
        )

    def baseline(self, ipc: int, label: str) -> dict:
        """The random-subset baseline under `label`, averaged over `eval.random_draws` seeded draws."""
        ec = self.eval_cfg(self.cfg.eval.arch, label)
        return self.cached(
            f"evals/{eval_key('random_draws', ipc, None, label)}.json",
            lambda: evaluate_random(self.data, ipc, self.label_net, ec, self.device, f"eval random ipc{ipc}"),
        )

    def full(self) -> dict:
        """Fresh networks trained on the whole training set (the reference row)."""
        fc = self.eval_cfg(self.cfg.eval.arch, "hard")
        return self.cached("evals/full.json", lambda: evaluate_full(self.data, fc, self.cfg.full, self.device))

    def archs(self) -> list[tuple[str, str]]:
        """(network, label mode) of each row per set: the main network under every label mode, then the others."""
        cfg, main_arch = self.cfg, canonical_arch(self.cfg.eval.arch)
        archs = [(main_arch, label) for label in cfg.label_modes]
        return archs + [(a, cfg.cross_arch_label) for a in cfg.cross_archs if a != main_arch]

    def evaluations(self) -> list[tuple[str, Callable[[], dict]]]:
        """Every evaluation of the table, as (its result file, how to compute it); the sets must be built."""
        cfg, main_arch = self.cfg, canonical_arch(self.cfg.eval.arch)
        cells: list[tuple[str, Callable[[], dict]]] = []
        for ipc in cfg.ipcs:
            cells += [
                (f"evals/{eval_key('random_draws', ipc, None, label)}.json", partial(self.baseline, ipc, label))
                for label in cfg.label_modes
            ]
            for method in cfg.methods:
                for arch, label in self.archs():
                    if method == "random" and arch == main_arch:
                        continue  # the random row on the main network is the baseline itself
                    cells.append(
                        (
                            f"evals/{eval_key(method, ipc, arch, label)}.json",
                            partial(self.evaluate_built, method, ipc, arch, label),
                        )
                    )
        if cfg.full.runs:
            cells.append(("evals/full.json", self.full))
        return cells

    def evaluate_built(self, method: str, ipc: int, arch: str, label: str) -> dict:
        return self.evaluate(method, self.build(method, ipc)[0], ipc, arch, label)

    def compute(self) -> None:
        """Train the pools, build every set, then run every evaluation: under torchrun, each phase's unfinished
        items shared over the processes, which all call this (everything lands in its file in the run)."""
        cfg = self.cfg
        sets = [(method, ipc) for ipc in cfg.ipcs for method in cfg.methods]
        if any(method in NEEDS_EXPERTS and not self.built(method, ipc) for method, ipc in sets):
            self.experts()
        for method, ipc in share(sets, lambda s: self.built(*s)):
            self.build(method, ipc)
        for _name, fn in share(self.evaluations(), lambda e: self.run_dir.path(e[0]).exists()):
            fn()
        barrier()

    def run(self) -> dict | None:
        """Compute everything (`compute`), then on rank 0 (the only process outside torchrun) write metrics,
        tables, plots and the report; returns metrics.json's content there, None on the other ranks."""
        self.compute()
        if not is_main():
            return None
        cfg = self.cfg
        main_arch = canonical_arch(cfg.eval.arch)
        rows, costs = [], {}
        for ipc in cfg.ipcs:
            baseline = {label: self.baseline(ipc, label) for label in cfg.label_modes}
            for method in cfg.methods:
                ds, cost = self.build(method, ipc)
                costs[f"{method}_ipc{ipc}"] = cost
                for arch, label in self.archs():
                    base = baseline.get(label) if arch == main_arch else None
                    r = base if method == "random" and base else self.evaluate(method, ds, ipc, arch, label)
                    g = gain(r, base) if base and method != "random" else None
                    rows.append(
                        {
                            "method": method,
                            "ipc": ipc,
                            "arch": arch,
                            "labels": label,
                            "loss": self.eval_cfg(arch, label).loss,
                            "mean": r["mean"],
                            "std": r["std"],
                            "runs": len(r["runs"]),
                            "std_over": r.get("std_over", "runs"),
                            "vs_random": g["value"] if g else None,
                            "vs_random_uncertainty": g["uncertainty"] if g else None,
                            "significant": g["significant"] if g else None,
                            "train_fit": r.get("train_fit"),
                            "seconds": cost["seconds"],
                            "peak_mb": cost["peak_mb"],
                            "protocol": r["protocol"],
                        }
                    )
        full = self.full() if cfg.full.runs else None
        metrics = {
            "dataset": self.data.name,
            "preset": cfg.preset,
            "rows": rows,
            "costs": costs,
            "full_data": full,
            "teacher_test_acc": self.pool.metas[0]["test_acc"],
            "cross_arch_drop": cross_arch_drop(rows, main_arch, cfg.cross_arch_label),
        }
        metrics = self.run_dir.write_metrics(metrics)
        self.write_outputs(metrics, main_arch)
        write_report_html(self.out)
        return metrics

    def write_outputs(self, metrics: dict, main_arch: str) -> None:
        rows = metrics["rows"]
        with (self.out / "results.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (self.out / "results.md").write_text(results_markdown(metrics))
        main = [r for r in rows if r["arch"] == main_arch]
        accuracy_lines(
            main, self.out / "accuracy_vs_ipc.png", f"{metrics['dataset']}: test accuracy by IPC ({main_arch})"
        )
        cost_bars(metrics["costs"], self.out / "cost.png", f"{metrics['dataset']}: cost of building each set")
        if self.cfg.cross_archs:
            cross_arch_bars(
                [r for r in rows if r["labels"] == self.cfg.cross_arch_label],
                self.out / "cross_arch.png",
                f"{metrics['dataset']}: test accuracy by network ({self.cfg.cross_arch_label} labels)",
            )


def eval_key(name: str, ipc: int, arch: str | None, label: str, split: Literal["test", "val"] = "test") -> str:
    """The name of one evaluation's file in `evals/`: set, IPC, network (none for the baselines), labels, split."""
    parts = [f"{name}_ipc{ipc}", *([canonical_arch(arch)] if arch else []), label, *(["val"] if split == "val" else [])]
    return "_".join(parts)


def cross_arch_drop(rows: list[dict], main_arch: str, label: str) -> list[dict]:
    """For each method and IPC: accuracy on the distillation network minus accuracy on each other network."""
    out = []
    for r in rows:
        if r["arch"] == main_arch or r["labels"] != label:
            continue
        ref = next(
            (
                m
                for m in rows
                if m["arch"] == main_arch
                and m["labels"] == label
                and m["method"] == r["method"]
                and m["ipc"] == r["ipc"]
            ),
            None,
        )
        if ref:
            out.append({"method": r["method"], "ipc": r["ipc"], "arch": r["arch"], "drop": ref["mean"] - r["mean"]})
    return out


def results_markdown(metrics: dict) -> str:
    """Markdown tables: accuracy with label mode and loss named per row, cost, and cross-architecture drops."""
    lines = [
        "| method | IPC | network | labels | loss | test acc. (%) | vs random, same labels (± 2 std of draws) "
        "| build s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in metrics["rows"]:
        vs = "–"
        if r["vs_random"] is not None:
            verdict = "" if r.get("significant") else ", within noise"
            vs = f"{r['vs_random']:+.2f} ± {r['vs_random_uncertainty']:.2f}{verdict}"
        over = " (std over draws)" if r.get("std_over") == "draws" else ""
        lines.append(
            f"| {r['method']} | {r['ipc']} | {r['arch']} | {r['labels']} | {r['loss']} | "
            f"{r['mean']:.2f} ± {r['std']:.2f}{over} | {vs} | {r['seconds']:.0f} | {r['peak_mb']:.0f} |"
        )
    if metrics.get("full_data"):
        f = metrics["full_data"]
        note = "" if f.get("converged", True) else " (still improving at its epoch cap: a lower bound)"
        lines += ["", f"Full training set: {f['mean']:.2f} ± {f['std']:.2f} % ({f['protocol']}){note}."]
    lines += ["", f"Teacher test accuracy: {metrics['teacher_test_acc']:.2f} %."]
    if metrics["cross_arch_drop"]:
        lines += ["", "| method | IPC | network | drop from the distillation network (points) |", "|---|---|---|---|"]
        lines += [f"| {d['method']} | {d['ipc']} | {d['arch']} | {d['drop']:.2f} |" for d in metrics["cross_arch_drop"]]
    return "\n".join(lines) + "\n"


def run_compare(
    cfg: CompareConfig, out: Path, teachers: Path | None = None, experts: Path | None = None
) -> dict | None:
    """Build, evaluate and tabulate every method at every IPC; returns metrics.json's content.

    Under torchrun every process calls this: they share the work, and rank 0 writes and returns the tables
    (the other ranks return None).
    """
    torch.manual_seed(cfg.seed)
    with tf32(cfg.tf32), process_group(resolve_device(cfg.device)):
        return Comparison(cfg, out, teachers, experts).run()
