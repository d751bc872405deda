"""`distill image ...`: APM image dataset distillation (a thin layer over distillkit.image).

Where a setting comes from, lowest to highest: the preset, the `--config` file, `--set section.key=value`, then
the flags actually typed (`--ipc 3`). A flag left out overrides nothing (its help names the default); a typed
flag and a `--set` of the same key that disagree are refused. `--print-config` prints the resolved settings
(YAML) and exits before any data or output folder is touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from distillkit.cli.common import SettingsOptions, option_groups
from distillkit.devices import DEVICE_HELP
from distillkit.distributed import is_main
from distillkit.errors import UserError
from distillkit.overrides import set_dotted, typed_flags
from distillkit.runs import check_out_file
from distillkit.settings import (
    Flags,
    choose_preset,
    layered,
    merge_settings,
    require_dotted,
    resolve,
    resolve_with_preset,
    validate,
)

if TYPE_CHECKING:
    from distillkit.data.images import ImageData
    from distillkit.image.experts import ExpertConfig
    from distillkit.image.jobs import ExpertJob, TeacherJob
    from distillkit.image.teacher import TeacherConfig

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


def data_options(
    dataset: str | None = DATASET,
    data_root: Path | None = DATA_ROOT,
    size: int | None = SIZE,
    channels: int | None = CHANNELS,
    zca: bool | None = ZCA,
    download: bool | None = DOWNLOAD,
) -> Flags:
    """The data options every command that loads a dataset takes, as {dotted key: (flag, value or None)}."""
    root = {"data.root": ("--data-root", str(data_root) if data_root is not None else None)}
    return typed_flags("data", dataset=dataset, size=size, channels=channels, zca=zca, download=download) | root


def settings_options(set_example: str) -> Callable[..., SettingsOptions]:
    """The options every command ends with: --seed, --device and where else its settings come from (`set_example`
    is the --set its help shows)."""

    def options(
        seed: int | None = SEED_FLAG,
        device: str | None = DEVICE_FLAG,
        set_: list[str] = sets_option(set_example),
        config: Path | None = CONFIG,
        print_config: bool = PRINT_CONFIG,
    ) -> SettingsOptions:
        return SettingsOptions(config, set_, print_config, typed_flags(seed=seed, device=device))

    return options


@app.command()
@option_groups(data=data_options, settings=settings_options("apm.alpha_ce=0.2"))
def run(
    *,
    data: Flags,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/image"), help="Run directory (resumed when it exists)."),
    arch: str | None = typer.Option(None, help="Teacher/student architecture (default ConvNet)."),
    teachers: Path | None = TEACHERS,
    segment_size: int | None = typer.Option(None, min=1, help="APM segment size (the memory knob)."),
    iterations: int | None = typer.Option(None, min=1, help="APM image updates T."),
    settings: SettingsOptions,
) -> None:
    """Teacher -> APM -> evaluation beside a random real subset and the full data, in one run directory."""
    from distillkit.image.pipeline import make_config, results_table, run_image

    flags = {
        **data,
        **typed_flags("apm", ipc=ipc, segment_size=segment_size, iterations=iterations),
        "teacher.arch": ("--arch", arch),
        **settings.flags,
    }
    cfg = resolve_with_preset(make_config, preset, settings.config, settings.sets, flags)
    if settings.begin(cfg, out) is None:
        return
    metrics = run_image(cfg, out, teachers)
    typer.echo(results_table(metrics))
    typer.echo(f"run directory: {out}")


@app.command()
@option_groups(data=data_options, settings=settings_options("teacher.lr=0.05"))
def teacher(
    *,
    data: Flags,
    out: Path = typer.Option(Path("runs/teachers"), help="Folder for teacher_i.safetensors and pool.json."),
    num_teachers: int | None = typer.Option(None, help="Pool size N (default: 1)."),
    epochs: int | None = typer.Option(None, help="Epochs per teacher (default and spec: 100)."),
    arch: str | None = typer.Option(None, help="Network (default: convnet)."),
    width: int | None = WIDTH,
    settings: SettingsOptions,
) -> None:
    """Train a pool of N teachers, each kept at its best validation epoch."""
    from distillkit.image.jobs import TeacherJob
    from distillkit.image.teacher import train_pool

    typed = typed_flags("teacher", num_teachers=num_teachers, epochs=epochs, arch=arch)
    _, manifest = _train_pool(TeacherJob, None, "teacher", {**data, **typed}, width, train_pool, out, settings)
    if manifest is None:
        return
    for t in json.loads(manifest.read_text())["teachers"]:
        typer.echo(f"{t['file']}: validation {t['val_acc']:.2f} %, test {t['test_acc']:.2f} %")


@app.command()
@option_groups(data=data_options, settings=settings_options("experts.batch_size=128"))
def experts(
    *,
    data: Flags,
    out: Path = typer.Option(Path("runs/experts"), help="Folder for expert_i.safetensors and experts.json."),
    num_experts: int | None = typer.Option(None, help="Number of expert trajectories (default: 10; MTT: 100)."),
    epochs: int | None = typer.Option(
        None, help="Epochs per expert (default and MTT: 50); parameters are kept after every epoch."
    ),
    lr: float | None = typer.Option(None, help="Constant SGD learning rate, no momentum (default and MTT: 0.01)."),
    arch: str | None = typer.Option(None, help="Network (default: convnet)."),
    width: int | None = WIDTH,
    settings: SettingsOptions,
) -> None:
    """Train expert trajectories for the MTT/TESLA baselines; finished experts are kept when re-run."""
    from distillkit.image.experts import train_experts
    from distillkit.image.jobs import EXPERT_DEFAULTS, ExpertJob

    typed = typed_flags("experts", num_experts=num_experts, epochs=epochs, lr=lr, arch=arch)
    flags = {**data, **typed}
    job, manifest = _train_pool(ExpertJob, EXPERT_DEFAULTS, "experts", flags, width, train_experts, out, settings)
    if manifest is None:
        return
    for e in json.loads(manifest.read_text())["experts"]:
        typer.echo(f"{e['file']}: validation {e['val_acc']:.2f} % after {job.experts.epochs} epochs")
    typer.echo(f"experts: {manifest}")


def _train_pool(
    job_type: type[TeacherJob] | type[ExpertJob],
    defaults: dict[str, Any] | None,
    section: str,
    flags: Flags,
    width: int | None,
    train: Callable[[ImageData, Any, Path, str], Path],
    out: Path,
    settings: SettingsOptions,
) -> tuple[TeacherJob | ExpertJob, Path | None]:
    """Resolve a teacher or experts job from the command's typed `flags` and --width, then train the networks its
    `section` describes (seeded by the job) into `out`.

    The job and the manifest the training wrote, on rank 0; None on the other torchrun processes and after
    --print-config.
    """
    flags = {**flags, f"{section}.net_options.width": ("--width", width), **settings.flags}
    job = resolve(job_type, defaults, settings.config, settings.sets, flags)
    part: TeacherConfig | ExpertConfig = getattr(job, section)
    part.seed = job.seed
    device = settings.begin(job, out)
    if device is None:
        return job, None
    manifest = train(job.data.load(job.seed), part, out, device)
    return job, manifest if is_main() else None  # under torchrun rank 0 prints the pool


APM_KEYS = ("ipc", "iterations", "segment_size", "discrepancy", "alpha_ce", "lr_img", "lr_net", "student_epochs")


@app.command("distill")
@option_groups(data=data_options, settings=settings_options("apm.segment_size=50 --set apm.discrepancy=kl"))
def distill_cmd(
    *,
    teachers: Path = typer.Option(..., help="Teacher pool folder (from `distill image teacher`)."),
    data: Flags,
    ipc: int | None = typer.Option(None, min=1, help="Images per class (default: 10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/apm"), help="Run directory (resumed when it exists)."),
    settings: SettingsOptions,
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

    require_dotted(settings.sets, {k: "apm" for k in APMConfig.model_fields if k != "seed"})
    flags = {
        **data,
        "apm.ipc": ("--ipc", ipc),
        **settings.flags,
        "teachers": ("--teachers", str(teachers)),
        **typed_flags(groups=groups, group_split=group_split),
    }
    given = layered(None, settings.config, settings.sets, flags)
    preset = choose_preset(preset, given)
    job = validate(DistillJob, merge_settings(distill_preset(preset, given), given), flags)
    job.apm.seed = job.seed
    dev = settings.begin(job)
    if dev is None:
        return
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
    merged = distill_groups(data, TeacherPool(teachers), cfg, out, groups, split, device)  # pool moved per rank
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
@option_groups(settings=settings_options("eval.batch_size=128"))
def eval_cmd(
    *,
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
    out: Path | None = typer.Option(None, help="Write the results as JSON here."),
    settings: SettingsOptions,
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
        **typed_flags("eval", arch=arch, runs=runs, epochs=epochs, lr=lr, label_mode=label_mode, loss=loss),
        "eval.net_options.width": ("--width", width),
        **typed_flags(baselines=baselines),
        **settings.flags,
    }
    job = resolve(EvalJob, None, settings.config, settings.sets, flags)
    cfg, seed = job.eval, job.seed
    cfg.seed = seed
    dev = settings.begin(job)
    if dev is None:
        return
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
@option_groups(data=data_options, settings=settings_options("mtt.syn_steps=30"))
def compare(
    *,
    methods: str | None = typer.Option(
        None,
        help="Comma-separated: apm, mtt, tesla, dm, herding, kcenter, random (default: apm,mtt,dm,herding,random).",
    ),
    data: Flags,
    ipc: str | None = typer.Option(None, help="Comma-separated images-per-class values, e.g. 1,10,50 (default: 1,10)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/compare"), help="Run directory (resumed when it exists)."),
    arch: str | None = typer.Option(None, help="Distillation and main evaluation network (default ConvNet)."),
    cross_arch: str | None = typer.Option(
        None, help="Also evaluate on these networks, e.g. resnet18,vgg11,alexnet,vit (default: none)."
    ),
    labels: str | None = typer.Option(
        None, help="Label modes every set is trained with: soft, hard or both (default: soft,hard)."
    ),
    teachers: Path | None = TEACHERS,
    experts: Path | None = EXPERTS,
    settings: SettingsOptions,
) -> None:
    """Several methods, one teacher pool, one evaluator: a table (markdown, CSV) and plots."""
    from distillkit.image.compare import make_compare_config, run_compare

    flags = {
        **data,
        "methods": ("--methods", _csv(methods)),
        "ipcs": ("--ipc", _csv(ipc, int)),
        "label_modes": ("--labels", _csv(labels)),
        "cross_archs": ("--cross-arch", _csv(cross_arch)),
        "teacher.arch": ("--arch", arch),
        **settings.flags,
    }
    cfg = resolve_with_preset(make_compare_config, preset, settings.config, settings.sets, flags)
    if settings.begin(cfg, out) is None:
        return
    if run_compare(cfg, out, teachers, experts) is None:
        return  # another torchrun process than rank 0: rank 0 prints the tables
    typer.echo((out / "results.md").read_text())
    typer.echo(f"run directory: {out} (results.md, results.csv, accuracy_vs_ipc.png, cost.png)")


@app.command()
@option_groups(data=data_options, settings=settings_options("apm.iterations=300"))
def tune(
    *,
    method: str = typer.Option("apm", help="apm, dm or mtt: whose knobs to search."),
    data: Flags,
    ipc: int = typer.Option(10, min=1, help="Images per class the settings are chosen for."),
    trials: int = typer.Option(20, help="Trials in all (finished ones are kept when the search is resumed)."),
    preset: str | None = PRESET,
    out: Path = typer.Option(Path("runs/tune"), help="Search folder: study.db, trials/, preset.yaml, tune.json."),
    teachers: Path | None = TEACHERS,
    experts: Path | None = EXPERTS,
    settings: SettingsOptions,
) -> None:
    """Choose a method's knobs on the validation split (Optuna, resumable); writes OUT/preset.yaml."""
    from distillkit.image.compare import make_compare_config
    from distillkit.image.tune import tune as run_tune

    if trials < 1:
        raise UserError(f"--trials must be at least 1, not {trials}")
    flags = {**data, **settings.flags}
    given = layered(None, settings.config, settings.sets, flags)
    preset = choose_preset(preset, given)
    set_dotted(given, "full.runs", 0)  # the search never trains on the full data
    set_dotted(given, "ipcs", [ipc])  # the IPC searched (and the Table A9 row of a paper preset)
    cfg = make_compare_config(preset, given)
    if settings.begin(cfg, out) is None:
        return
    summary = run_tune(cfg, method, ipc, trials, out, teachers, experts)
    best = summary["best"]
    typer.echo(f"best of {len(summary['trials'])} trials: validation {best['val_acc']:.2f} % with {best['params']}")
    typer.echo(f"settings: {summary['preset_file']} (use with --config)")
