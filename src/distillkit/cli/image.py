"""`distill image ...`: APM image dataset distillation (a thin layer over distillkit.image).

Where a setting comes from, lowest to highest: the preset, the `--config` file, `--set key=value`, then the
flags actually typed (`--ipc 3`). A flag left out overrides nothing (its help names the default); a typed
flag and a `--set` of the same key that disagree are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from distillkit.errors import UserError, validated
from distillkit.overrides import apply_flags, apply_overrides, set_dotted
from distillkit.runs import check_out_file, make_dir

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
PRESET = typer.Option("quick", help="quick (minutes on a CPU), standard (about an hour on a CPU), paper (GPU).")
SIZE = typer.Option(None, min=1, max=1024, help="Pad/resize images to SIZE x SIZE (e.g. 32).")
CHANNELS = typer.Option(None, min=1, max=4, help="Repeat grey images to this many channels (e.g. 3).")
ZCA = typer.Option(None, "--zca/--no-zca", help="ZCA-whiten (eps 0.1) with training-split statistics (default: no).")
DOWNLOAD = typer.Option(
    None, "--download/--no-download", help="Download the dataset when it is not found locally (default: no)."
)
SEED = typer.Option(0, min=0, max=SEED_MAX, help="Seed of every random stream.")
DEVICE = typer.Option("cpu", help="cpu or cuda")
SEED_FLAG = typer.Option(None, min=0, max=SEED_MAX, help="Seed of every random stream (default: 0).")
DEVICE_FLAG = typer.Option(None, help="cpu or cuda (default: cpu)")
WIDTH = typer.Option(None, min=1, help="Network width (ConvNet default 128).")
TEACHERS = typer.Option(None, help="Use this trained teacher pool instead of training one.")
EXPERTS = typer.Option(None, help="Use these MTT expert trajectories instead of training them.")


CONFIG = typer.Option(
    None, "--config", help="YAML/JSON settings file (e.g. a tune run's preset.yaml); --set and typed flags win."
)


def parse_sets(sets: list[str], config: Path | None = None) -> dict[str, Any]:
    """Nested overrides: the `--config` file's settings, then ["apm.iterations=300", ...] on top."""
    base: dict[str, Any] = {}
    if config is not None:
        from distillkit.image.tune import read_config_file

        if config.is_dir():
            raise UserError(
                f"--config {config} is a directory; pass a YAML or JSON file, e.g. a tune run's preset.yaml"
            )
        base = read_config_file(config)
    return apply_overrides(base, sets)


def _data_flags(
    dataset: str | None,
    data_root: Path | None,
    size: int | None,
    channels: int | None,
    zca: bool | None,
    download: bool | None,
    prefix: str = "data.",
) -> dict[str, tuple[str, Any]]:
    """The shared data flags as {dotted key: (flag, value or None when not typed)}."""
    return {
        f"{prefix}dataset": ("--dataset", dataset),
        f"{prefix}root": ("--data-root", str(data_root) if data_root is not None else None),
        f"{prefix}size": ("--size", size),
        f"{prefix}channels": ("--channels", channels),
        f"{prefix}zca": ("--zca", zca),
        f"{prefix}download": ("--download", download),
    }


def _data_config(
    dataset: str | None,
    data_root: Path | None,
    size: int | None,
    channels: int | None,
    zca: bool | None,
    download: bool | None,
):
    """The DataConfig of the typed data flags (DataConfig's defaults for the rest)."""
    from distillkit.image.pipeline import DataConfig

    return DataConfig(**apply_flags({}, [], _data_flags(dataset, data_root, size, channels, zca, download, "")))


@app.command()
def run(
    dataset: str | None = DATASET,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str = PRESET,
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
    set_: list[str] = typer.Option([], "--set", help=f"Any config value, e.g. --set apm.alpha_ce=0.2. {ORDER}"),
    config: Path | None = CONFIG,
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
    cfg = make_config(preset, apply_flags(parse_sets(set_, config), set_, flags))
    make_dir(out)
    metrics = run_image(cfg, out, teachers)
    typer.echo(results_table(metrics))
    typer.echo(f"run directory: {out}")


@app.command()
def teacher(
    dataset: str | None = DATASET,
    out: Path = typer.Option(Path("runs/teachers"), help="Folder for teacher_i.safetensors and pool.json."),
    num_teachers: int = typer.Option(1, help="Pool size N."),
    epochs: int = typer.Option(100, help="Epochs per teacher (spec: 100)."),
    arch: str = typer.Option("convnet"),
    width: int | None = WIDTH,
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int = SEED,
    device: str = DEVICE,
) -> None:
    """Train a pool of N teachers, each kept at its best validation epoch."""
    from distillkit.image.teacher import TeacherConfig, train_pool

    cfg = validated(TeacherConfig, {"arch": arch, "num_teachers": num_teachers, "epochs": epochs, "seed": seed}, True)
    cfg.net_options = {"width": width} if width else {}
    data_cfg = _data_config(dataset, data_root, size, channels, zca, download)
    make_dir(out)
    manifest = train_pool(data_cfg.load(seed), cfg, out, device)
    for t in json.loads(manifest.read_text())["teachers"]:
        typer.echo(f"{t['file']}: validation {t['val_acc']:.2f} %, test {t['test_acc']:.2f} %")


@app.command()
def experts(
    dataset: str | None = DATASET,
    out: Path = typer.Option(Path("runs/experts"), help="Folder for expert_i.safetensors and experts.json."),
    num_experts: int = typer.Option(10, help="Number of expert trajectories (MTT: 100)."),
    epochs: int = typer.Option(50, help="Epochs per expert (MTT: 50); parameters are kept after every epoch."),
    lr: float = typer.Option(0.01, help="Constant SGD learning rate, no momentum (MTT: 0.01)."),
    arch: str = typer.Option("convnet"),
    width: int | None = WIDTH,
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int = SEED,
    device: str = DEVICE,
) -> None:
    """Train expert trajectories for the MTT/TESLA baselines; finished experts are kept when re-run."""
    from distillkit.image.mtt import ExpertConfig, train_experts

    values = {"arch": arch, "num_experts": num_experts, "epochs": epochs, "lr": lr, "seed": seed}
    cfg = validated(ExpertConfig, values, flags=True)
    cfg.net_options = {"width": width} if width else {}
    data_cfg = _data_config(dataset, data_root, size, channels, zca, download)
    make_dir(out)
    manifest = train_experts(data_cfg.load(seed), cfg, out, device)
    for e in json.loads(manifest.read_text())["experts"]:
        typer.echo(f"{e['file']}: validation {e['val_acc']:.2f} % after {epochs} epochs")
    typer.echo(f"experts: {manifest}")


@app.command("distill")
def distill_cmd(
    teachers: Path = typer.Option(..., help="Teacher pool folder (from `distill image teacher`)."),
    dataset: str | None = DATASET,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str = PRESET,
    out: Path = typer.Option(Path("runs/apm"), help="Run directory (resumed when it exists)."),
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
    seed: int | None = SEED_FLAG,
    device: str = DEVICE,
    set_: list[str] = typer.Option(
        [], "--set", help=f"APM knobs, e.g. --set segment_size=50 --set discrepancy=kl. {ORDER}"
    ),
    groups: int | None = typer.Option(
        None,
        min=1,
        help="Distil G disjoint groups (each with its own seed) and merge them; "
        "under torchrun the groups are shared among the processes.",
    ),
    group_split: str = typer.Option("ipc", help="ipc (every class, a chunk of its IPC per group) or classes."),
) -> None:
    """APM distillation only: write distilled.safetensors and grid.png into OUT."""
    from distillkit.image.apm import APMConfig, distill
    from distillkit.image.pipeline import _preset
    from distillkit.image.plots import image_grid
    from distillkit.image.teacher import TeacherPool
    from distillkit.runs import prepare_run_dir

    data_cfg = _data_config(dataset, data_root, size, channels, zca, download)
    flags = {"ipc": ("--ipc", ipc), "seed": ("--seed", seed)}
    cfg = validated(APMConfig, apply_flags({**_preset(preset)["apm"], **parse_sets(set_)}, set_, flags))
    seed = cfg.seed
    if not teachers.is_dir():
        raise UserError(f"--teachers {teachers} is not a folder; pass a teacher pool from `distill image teacher`")
    if groups is not None:
        _distill_groups_cmd(data_cfg, cfg, teachers, out, groups, group_split, device, seed)
        return
    prepare_run_dir(out, {"data": data_cfg.model_dump(), "apm": cfg.model_dump(), "teachers": str(teachers)})
    data = data_cfg.load(seed)
    ds = distill(data, TeacherPool(teachers, device), cfg, out, device)
    ds.save(out / "distilled.safetensors")
    image_grid(data.denormalise(ds.images), ds.labels, data.classes, out / "grid.png")
    typer.echo(f"distilled set: {out / 'distilled.safetensors'} ({len(ds.labels)} images); grid: {out / 'grid.png'}")


def _distill_groups_cmd(
    data_cfg: Any, cfg: Any, teachers: Path, out: Path, groups: int, split: str, device: str, seed: int
) -> None:
    """`distill --groups G`: the groups of this process (all of them outside torchrun), then the merge on rank 0."""
    import os

    from distillkit.image.apm import check_groups
    from distillkit.image.parallel import distill_groups
    from distillkit.image.teacher import TeacherPool
    from distillkit.runs import prepare_run_dir

    check_groups(groups, split, cfg.ipc)  # G < 1, G > IPC and a bad split, before any data is read
    data = data_cfg.load(seed)
    check_groups(groups, split, cfg.ipc, data.num_classes)
    config = {
        "data": data_cfg.model_dump(),
        "apm": cfg.model_dump(),
        "teachers": str(teachers),
        "groups": groups,
        "group_split": split,
    }
    if os.environ.get("RANK", "0") == "0" or (out / "config.json").exists():  # only rank 0 writes config.json
        prepare_run_dir(out, config)
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
    arch: str = typer.Option("convnet", help="Architecture of the fresh networks."),
    width: int | None = WIDTH,
    runs: int = typer.Option(5, help="R fresh networks."),
    epochs: int = typer.Option(1000, help="Training epochs per network (spec: 1000)."),
    lr: float = typer.Option(0.02),
    label_mode: str = typer.Option("soft", help="soft (teacher logits) or hard."),
    loss: str = typer.Option("l1", help="l1 or kl for soft labels, ce for hard labels."),
    baselines: bool = typer.Option(True, help="Also evaluate a random real subset of the same IPC."),
    teachers: Path | None = typer.Option(None, help="Teacher pool, to soft-label the random subset."),
    data_root: Path | None = DATA_ROOT,
    seed: int = SEED,
    device: str = DEVICE,
    out: Path | None = typer.Option(None, help="Write the results as JSON here."),
) -> None:
    """Train R fresh networks on a distilled set (and a random real subset); report test accuracy."""
    from distillkit.image.distilled import DistilledSet
    from distillkit.image.evaluate import EvalConfig, evaluate_set, random_subset
    from distillkit.image.pipeline import DataConfig
    from distillkit.image.teacher import TeacherPool
    from distillkit.image.train import predict
    from distillkit.runs import write_json

    values = {"arch": arch, "runs": runs, "epochs": epochs, "lr": lr, "label_mode": label_mode, "loss": loss}
    cfg = validated(EvalConfig, {**values, "seed": seed}, flags=True)
    cfg.net_options = {"width": width} if width else {}
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
    results = {"distilled": evaluate_set(ds.images, ds.labels, ds.soft_labels, data, cfg, device)}
    if baselines:
        ipc = len(ds.labels) // data.num_classes
        x, y = random_subset(data, ipc, seed)
        soft = predict(TeacherPool(teachers, device).nets[0], x) if teachers else None
        if soft is None and cfg.label_mode == "soft":
            typer.echo("random subset skipped: soft labels need --teachers")
        else:
            results["random"] = evaluate_set(x, y, soft, data, cfg, device)
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
    preset: str = PRESET,
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
    set_: list[str] = typer.Option([], "--set", help=f"Any config value, e.g. --set mtt.syn_steps=30. {ORDER}"),
    config: Path | None = CONFIG,
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
    cfg = make_compare_config(preset, apply_flags(parse_sets(set_, config), set_, flags))
    make_dir(out)
    run_compare(cfg, out, teachers, experts)
    typer.echo((out / "results.md").read_text())
    typer.echo(f"run directory: {out} (results.md, results.csv, accuracy_vs_ipc.png, cost.png)")


@app.command()
def tune(
    method: str = typer.Option("apm", help="apm, dm or mtt: whose knobs to search."),
    dataset: str | None = DATASET,
    ipc: int = typer.Option(10, min=1, help="Images per class the settings are chosen for."),
    trials: int = typer.Option(20, help="Trials in all (finished ones are kept when the search is resumed)."),
    preset: str = PRESET,
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
    set_: list[str] = typer.Option([], "--set", help=f"Fixed settings, e.g. --set apm.iterations=300. {ORDER}"),
    config: Path | None = CONFIG,
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
    settings = apply_flags(parse_sets(set_, config), set_, flags)
    set_dotted(settings, "full.runs", 0)  # the search never trains on the full data
    cfg = make_compare_config(preset, settings)
    make_dir(out)
    summary = run_tune(cfg, method, ipc, trials, out, teachers, experts)
    best = summary["best"]
    typer.echo(f"best of {len(summary['trials'])} trials: validation {best['val_acc']:.2f} % with {best['params']}")
    typer.echo(f"settings: {summary['preset_file']} (use with --config)")
