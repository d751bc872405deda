"""`distill image ...`: APM image dataset distillation (a thin layer over distillkit.image).

Where a setting comes from, lowest to highest: the preset, the `--config` file, `--set section.key=value`, then
the flags actually typed (`--ipc 3`). A flag left out overrides nothing (its help names the default); a typed
flag and a `--set` of the same key that disagree are refused. `--print-config` prints the resolved settings
(YAML) and exits before any data or output folder is touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from distillkit.devices import DEVICE_HELP, resolve_device
from distillkit.distributed import is_main
from distillkit.errors import UserError
from distillkit.overrides import set_dotted
from distillkit.runs import check_out_file, make_dir
from distillkit.settings import (
    Flags,
    choose_preset,
    layered,
    merge_settings,
    require_dotted,
    resolve,
    resolve_with_preset,
    to_yaml,
    validate,
)

app = typer.Typer(
    no_args_is_help=True,
    help="APM image dataset distillation. Settings: preset < --config < --set < the flags you type.",
)

SEED_MAX = 2**32 - 1  # numpy's seeds stop here
ORDER = "Wins over the preset and --config; a typed flag wins over it, and must agree with it."
DATASET = typer.Option(
    None, help="mnist (default), fashion_mnist, digits, cifar10, cifar100, tiny_imagenet, image_folder, npz"
)
DATA_ROOT = typer.Option(None, help="Folder (or .npz file) holding the data; offline defaults need none.")
PRESET = typer.Option(
    None,
    help="quick (minutes on a CPU; the default, unless --config names another), standard (about an hour on a "
    "CPU), paper (the published settings, per dataset and IPC from APM's Table A9; GPU).",
)
SIZE = typer.Option(None, min=1, max=1024, help="Pad/resize images to SIZE x SIZE (e.g. 32).")
CHANNELS = typer.Option(None, min=1, max=4, help="Repeat grey images to this many channels (e.g. 3).")
ZCA = typer.Option(None, "--zca/--no-zca", help="ZCA-whiten (eps 0.1) with training-split statistics (default: no).")
DOWNLOAD = typer.Option(
    None, "--download/--no-download", help="Download the dataset when it is not found locally (default: no)."
)
SEED_FLAG = typer.Option(None, min=0, max=SEED_MAX, help="Seed of every random stream (default: 0).")
DEVICE_FLAG = typer.Option(None, "--device", help=DEVICE_HELP)
WIDTH = typer.Option(None, min=1, help="Network width (ConvNet default 128).")
TEACHERS = typer.Option(None, help="Use this trained teacher pool instead of training one.")
EXPERTS = typer.Option(None, help="Use these MTT expert trajectories instead of training them.")
CONFIG = typer.Option(
    None,
    "--config",
    help="YAML/JSON settings file (a run's config.json, or a tune run's preset.yaml); --set and typed flags win.",
)
PRINT_CONFIG = typer.Option(
    False, "--print-config", help="Print the resolved settings (YAML) and exit; no data or output is touched."
)


def sets_option(example: str) -> Any:
    return typer.Option([], "--set", help=f"Any setting as section.key=value, e.g. --set {example}. {ORDER}")


def parse_sets(sets: list[str], config: Path | None = None) -> dict[str, Any]:
    """Nested overrides: the `--config` file's settings, then ["apm.iterations=300", ...] on top."""
    return layered(None, config, sets)


def printed(cfg: BaseModel, print_config: bool) -> bool:
    """With --print-config, print `cfg` as YAML and say so (the command then returns before any work)."""
    if print_config:
        typer.echo(to_yaml(cfg), nl=False)
    return print_config


def _data_flags(
    dataset: str | None,
    data_root: Path | None,
    size: int | None,
    channels: int | None,
    zca: bool | None,
    download: bool | None,
) -> Flags:
    """The shared data flags as {dotted key: (flag, value or None when not typed)}."""
    return {
        "data.dataset": ("--dataset", dataset),
        "data.root": ("--data-root", str(data_root) if data_root is not None else None),
        "data.size": ("--size", size),
        "data.channels": ("--channels", channels),
        "data.zca": ("--zca", zca),
        "data.download": ("--download", download),
    }


@app.command()
def run(
    dataset: str | None = DATASET,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/image"), help="Run directory (resumed when it exists)."),
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    arch: str | None = typer.Option(None, help="Teacher/student architecture (default ConvNet)."),
    teachers: Path | None = TEACHERS,
    segment_size: int | None = typer.Option(None, min=1, help="APM segment size (the memory knob)."),
    iterations: int | None = typer.Option(None, min=1, help="APM image updates T."),
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("apm.alpha_ce=0.2"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Teacher -> APM -> evaluation beside a random real subset and the full data, in one run directory."""
    from distillkit.image.pipeline import make_config, results_table, run_image

    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "apm.ipc": ("--ipc", ipc),
        "apm.segment_size": ("--segment-size", segment_size),
        "apm.iterations": ("--iterations", iterations),
        "teacher.arch": ("--arch", arch),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    cfg = resolve_with_preset(make_config, preset, config, set_, flags)
    if printed(cfg, print_config):
        return
    resolve_device(cfg.device)
    make_dir(out)
    metrics = run_image(cfg, out, teachers)
    typer.echo(results_table(metrics))
    typer.echo(f"run directory: {out}")


@app.command()
def teacher(
    dataset: str | None = DATASET,
    out: Path = typer.Option(Path("runs/teachers"), help="Folder for teacher_i.safetensors and pool.json."),
    num_teachers: int | None = typer.Option(None, help="Pool size N (default: 1)."),
    epochs: int | None = typer.Option(None, help="Epochs per teacher (default and spec: 100)."),
    arch: str | None = typer.Option(None, help="Network (default: convnet)."),
    width: int | None = WIDTH,
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("teacher.lr=0.05"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Train a pool of N teachers, each kept at its best validation epoch."""
    from distillkit.image.jobs import TeacherJob
    from distillkit.image.teacher import train_pool

    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "teacher.num_teachers": ("--num-teachers", num_teachers),
        "teacher.epochs": ("--epochs", epochs),
        "teacher.arch": ("--arch", arch),
        "teacher.net_options.width": ("--width", width),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    job = resolve(TeacherJob, None, config, set_, flags)
    job.teacher.seed = job.seed
    if printed(job, print_config):
        return
    dev = str(resolve_device(job.device))
    make_dir(out)
    manifest = train_pool(job.data.load(job.seed), job.teacher, out, dev)
    if not is_main():
        return  # under torchrun rank 0 prints the pool
    for t in json.loads(manifest.read_text())["teachers"]:
        typer.echo(f"{t['file']}: validation {t['val_acc']:.2f} %, test {t['test_acc']:.2f} %")


@app.command()
def experts(
    dataset: str | None = DATASET,
    out: Path = typer.Option(Path("runs/experts"), help="Folder for expert_i.safetensors and experts.json."),
    num_experts: int | None = typer.Option(None, help="Number of expert trajectories (default: 10; MTT: 100)."),
    epochs: int | None = typer.Option(
        None, help="Epochs per expert (default and MTT: 50); parameters are kept after every epoch."
    ),
    lr: float | None = typer.Option(None, help="Constant SGD learning rate, no momentum (default and MTT: 0.01)."),
    arch: str | None = typer.Option(None, help="Network (default: convnet)."),
    width: int | None = WIDTH,
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("experts.batch_size=128"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Train expert trajectories for the MTT/TESLA baselines; finished experts are kept when re-run."""
    from distillkit.image.experts import train_experts
    from distillkit.image.jobs import EXPERT_DEFAULTS, ExpertJob

    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "experts.num_experts": ("--num-experts", num_experts),
        "experts.epochs": ("--epochs", epochs),
        "experts.lr": ("--lr", lr),
        "experts.arch": ("--arch", arch),
        "experts.net_options.width": ("--width", width),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    job = resolve(ExpertJob, EXPERT_DEFAULTS, config, set_, flags)
    job.experts.seed = job.seed
    if printed(job, print_config):
        return
    dev = str(resolve_device(job.device))
    make_dir(out)
    manifest = train_experts(job.data.load(job.seed), job.experts, out, dev)
    if not is_main():
        return  # under torchrun rank 0 prints the pool
    for e in json.loads(manifest.read_text())["experts"]:
        typer.echo(f"{e['file']}: validation {e['val_acc']:.2f} % after {job.experts.epochs} epochs")
    typer.echo(f"experts: {manifest}")


APM_KEYS = ("ipc", "iterations", "segment_size", "discrepancy", "alpha_ce", "lr_img", "lr_net", "student_epochs")


@app.command("distill")
def distill_cmd(
    teachers: Path = typer.Option(..., help="Teacher pool folder (from `distill image teacher`)."),
    dataset: str | None = DATASET,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/apm"), help="Run directory (resumed when it exists)."),
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("apm.segment_size=50 --set apm.discrepancy=kl"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
    groups: int | None = typer.Option(
        None,
        min=1,
        help="Distil G disjoint groups (each with its own seed) and merge them; "
        "under torchrun the groups are shared among the processes.",
    ),
    group_split: str | None = typer.Option(
        None, help="ipc (every class, a chunk of its IPC per group; the default) or classes."
    ),
) -> None:
    """APM distillation only: write distilled.safetensors and grid.png into OUT."""
    from distillkit.image.apm import APMConfig, distill
    from distillkit.image.jobs import DistillJob
    from distillkit.image.presets import distill_preset
    from distillkit.image.teacher import TeacherPool
    from distillkit.plots import image_grid
    from distillkit.runs import prepare_run_dir

    require_dotted(set_, {k: "apm" for k in APMConfig.model_fields if k != "seed"})
    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "apm.ipc": ("--ipc", ipc),
        "seed": ("--seed", seed),
        "device": ("--device", device),
        "teachers": ("--teachers", str(teachers)),
        "groups": ("--groups", groups),
        "group_split": ("--group-split", group_split),
    }
    settings = layered(None, config, set_, flags)
    preset = choose_preset(preset, settings)
    job = validate(DistillJob, merge_settings(distill_preset(preset, settings), settings), flags)
    job.apm.seed = job.seed
    if printed(job, print_config):
        return
    dev = str(resolve_device(job.device))
    cfg, data_cfg = job.apm, job.data
    if not teachers.is_dir():
        raise UserError(f"--teachers {teachers} is not a folder; pass a teacher pool from `distill image teacher`")
    if job.groups is not None:
        _distill_groups_cmd(job, teachers, out, dev)
        return
    prepare_run_dir(out, job.model_dump())
    data = data_cfg.load(job.seed)
    ds = distill(data, TeacherPool(teachers, dev), cfg, out, dev)
    ds.save(out / "distilled.safetensors")
    image_grid(data.denormalise(ds.images), ds.labels, data.classes, out / "grid.png")
    typer.echo(f"distilled set: {out / 'distilled.safetensors'} ({len(ds.labels)} images); grid: {out / 'grid.png'}")


def _distill_groups_cmd(job: Any, teachers: Path, out: Path, device: str) -> None:
    """`distill --groups G`: the groups of this process (all of them outside torchrun), then the merge on rank 0."""
    from distillkit.image.groups import check_groups
    from distillkit.image.parallel import distill_groups
    from distillkit.image.teacher import TeacherPool
    from distillkit.runs import prepare_run_dir

    cfg, groups, split = job.apm, job.groups, job.group_split
    check_groups(groups, split, cfg.ipc)  # G < 1, G > IPC and a bad split, before any data is read
    data = job.data.load(job.seed)
    check_groups(groups, split, cfg.ipc, data.num_classes)
    if is_main() or (out / "config.json").exists():  # only rank 0 writes config.json
        prepare_run_dir(out, job.model_dump())
    merged = distill_groups(data, TeacherPool(teachers, device), cfg, out, groups, split, device)
    if merged is not None:
        counts = ", ".join(map(str, merged.meta["class_counts"]))
        typer.echo(
            f"merged {groups} groups ({split} split): {out / 'distilled.safetensors'} "
            f"({len(merged.labels)} images; per class {counts}); grid: {out / 'grid.png'}; "
            f"groups: {out / 'groups.json'}"
        )


def _check_set_files(files: list[Path]) -> None:
    """Refuse a folder given where a distilled-set file is expected."""
    for f in files:
        if f.is_dir():
            raise UserError(f"{f} is a directory; pass a distilled-set file, e.g. {f / 'distilled.safetensors'}")


@app.command()
def merge(
    files: list[Path] = typer.Argument(..., help="Group files (OUT/group_*/distilled.safetensors) of one run."),
    out: Path = typer.Option(Path("merged.safetensors"), help="The merged set; its grid goes beside it."),
) -> None:
    """Concatenate distilled groups into one set (sorted by class, soft labels kept) and draw its grid."""
    from distillkit.image.parallel import merge_files

    _check_set_files(files)
    check_out_file(out)
    merged, grid = merge_files(files, out)
    typer.echo(f"merged {len(files)} groups: {out} ({len(merged.labels)} images); grid: {grid}")


@app.command("eval")
def eval_cmd(
    distilled: Path = typer.Argument(..., help="A distilled-set file (distilled.safetensors)."),
    arch: str | None = typer.Option(None, help="Architecture of the fresh networks (default: convnet)."),
    width: int | None = WIDTH,
    runs: int | None = typer.Option(None, help="R fresh networks (default: 5)."),
    epochs: int | None = typer.Option(None, help="Training epochs per network (default and spec: 1000)."),
    lr: float | None = typer.Option(None, help="Learning rate (default: 0.02)."),
    label_mode: str | None = typer.Option(None, help="soft (teacher logits; the default) or hard."),
    loss: str | None = typer.Option(None, help="l1 (the default) or kl for soft labels, ce for hard labels."),
    baselines: bool | None = typer.Option(
        None, "--baselines/--no-baselines", help="Also evaluate a random real subset of the same IPC (default: yes)."
    ),
    teachers: Path | None = typer.Option(None, help="Teacher pool, to soft-label the random subset."),
    data_root: Path | None = DATA_ROOT,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    out: Path | None = typer.Option(None, help="Write the results as JSON here."),
    set_: list[str] = sets_option("eval.batch_size=128"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Train R fresh networks on a distilled set (and a random real subset); report test accuracy."""
    from distillkit.data.config import DataConfig
    from distillkit.image.distilled import DistilledSet
    from distillkit.image.evaluate import evaluate_set, random_subset
    from distillkit.image.jobs import EvalJob
    from distillkit.image.teacher import TeacherPool
    from distillkit.image.train import predict
    from distillkit.runs import write_json

    flags = {
        "eval.arch": ("--arch", arch),
        "eval.net_options.width": ("--width", width),
        "eval.runs": ("--runs", runs),
        "eval.epochs": ("--epochs", epochs),
        "eval.lr": ("--lr", lr),
        "eval.label_mode": ("--label-mode", label_mode),
        "eval.loss": ("--loss", loss),
        "baselines": ("--baselines", baselines),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    job = resolve(EvalJob, None, config, set_, flags)
    cfg, seed = job.eval, job.seed
    cfg.seed = seed
    if printed(job, print_config):
        return
    dev = str(resolve_device(job.device))
    if out is not None:
        check_out_file(out)
    _check_set_files([distilled])
    ds = DistilledSet.load(distilled)
    if "dataset" not in ds.meta:
        raise UserError(f"{distilled} names no dataset in its metadata; it was not written by distillkit")
    opts = {
        k: v
        for k, v in ds.meta.get("data_options", {}).items()
        if k in {"size", "channels", "zca", "val_size", "train_limit"}
    }
    data = DataConfig(dataset=ds.meta["dataset"], root=str(data_root) if data_root else None, **opts).load(
        ds.meta.get("data_options", {}).get("seed", seed)
    )
    results = {"distilled": evaluate_set(ds.images, ds.labels, ds.soft_labels, data, cfg, dev)}
    if job.baselines:
        ipc = len(ds.labels) // data.num_classes
        x, y = random_subset(data, ipc, seed)
        soft = predict(TeacherPool(teachers, dev).nets[0], x) if teachers else None
        if soft is None and cfg.label_mode == "soft":
            typer.echo("random subset skipped: soft labels need --teachers")
        else:
            results["random"] = evaluate_set(x, y, soft, data, cfg, dev)
    for name, r in results.items():
        typer.echo(f"{name}: {r['mean']:.2f} ± {r['std']:.2f} % ({r['protocol']})")
    if out:
        write_json(out, results)


def _csv(value: str | None, cast=str) -> list | None:
    """A comma-separated flag as a list (None when the flag was not typed)."""
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"cannot read {value!r} as a comma-separated list of {cast.__name__}") from None


@app.command()
def compare(
    methods: str | None = typer.Option(
        None,
        help="Comma-separated: apm, mtt, tesla, dm, herding, kcenter, random (default: apm,mtt,dm,herding,random).",
    ),
    dataset: str | None = DATASET,
    ipc: str | None = typer.Option(None, help="Comma-separated images-per-class values, e.g. 1,10,50 (default: 1,10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/compare"), help="Run directory (resumed when it exists)."),
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    arch: str | None = typer.Option(None, help="Distillation and main evaluation network (default ConvNet)."),
    cross_arch: str | None = typer.Option(
        None, help="Also evaluate on these networks, e.g. resnet18,vgg11,alexnet,vit (default: none)."
    ),
    labels: str | None = typer.Option(
        None, help="Label modes every set is trained with: soft, hard or both (default: soft,hard)."
    ),
    teachers: Path | None = TEACHERS,
    experts: Path | None = EXPERTS,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("mtt.syn_steps=30"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Several methods, one teacher pool, one evaluator: a table (markdown, CSV) and plots."""
    from distillkit.image.compare import make_compare_config, run_compare

    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "methods": ("--methods", _csv(methods)),
        "ipcs": ("--ipc", _csv(ipc, int)),
        "label_modes": ("--labels", _csv(labels)),
        "cross_archs": ("--cross-arch", _csv(cross_arch)),
        "teacher.arch": ("--arch", arch),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    cfg = resolve_with_preset(make_compare_config, preset, config, set_, flags)
    if printed(cfg, print_config):
        return
    resolve_device(cfg.device)
    make_dir(out)
    if run_compare(cfg, out, teachers, experts) is None:
        return  # another torchrun process than rank 0: rank 0 prints the tables
    typer.echo((out / "results.md").read_text())
    typer.echo(f"run directory: {out} (results.md, results.csv, accuracy_vs_ipc.png, cost.png)")


@app.command()
def tune(
    method: str = typer.Option("apm", help="apm, dm or mtt: whose knobs to search."),
    dataset: str | None = DATASET,
    ipc: int = typer.Option(10, min=1, help="Images per class the settings are chosen for."),
    trials: int = typer.Option(20, help="Trials in all (finished ones are kept when the search is resumed)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/tune"), help="Search folder: study.db, trials/, preset.yaml, tune.json."),
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    teachers: Path | None = TEACHERS,
    experts: Path | None = EXPERTS,
    seed: int | None = SEED_FLAG,
    device: str | None = DEVICE_FLAG,
    set_: list[str] = sets_option("apm.iterations=300"),
    config: Path | None = CONFIG,
    print_config: bool = PRINT_CONFIG,
) -> None:
    """Choose a method's knobs on the validation split (Optuna, resumable); writes OUT/preset.yaml."""
    from distillkit.image.compare import make_compare_config
    from distillkit.image.tune import tune as run_tune

    if trials < 1:
        raise UserError(f"--trials must be at least 1, not {trials}")
    flags = {
        **_data_flags(dataset, data_root, size, channels, zca, download),
        "seed": ("--seed", seed),
        "device": ("--device", device),
    }
    settings = layered(None, config, set_, flags)
    preset = choose_preset(preset, settings)
    set_dotted(settings, "full.runs", 0)  # the search never trains on the full data
    set_dotted(settings, "ipcs", [ipc])  # the IPC searched (and the Table A9 row of a paper preset)
    cfg = make_compare_config(preset, settings)
    if printed(cfg, print_config):
        return
    resolve_device(cfg.device)
    make_dir(out)
    summary = run_tune(cfg, method, ipc, trials, out, teachers, experts)
    best = summary["best"]
    typer.echo(f"best of {len(summary['trials'])} trials: validation {best['val_acc']:.2f} % with {best['params']}")
    typer.echo(f"settings: {summary['preset_file']} (use with --config)")
