"""`distill text ...`: DiLM text dataset distillation.

Settings, lowest to highest: the preset, the `--config` file (e.g. a run's config.json), `--set section.key=value`,
the flags typed; a typed flag and a `--set` of the same key that disagree are refused. `--print-config` prints
the resolved settings (YAML) and exits before any data or output folder is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from distillkit.cli.common import SettingsOptions, option_groups
from distillkit.devices import DEVICE_HELP, resolve_device
from distillkit.errors import UserError
from distillkit.overrides import typed_flags
from distillkit.runs import check_out_file, make_dir
from distillkit.settings import resolve

app = typer.Typer(no_args_is_help=True, help="DiLM: distil a text classification set into a generator LM.")

SEED_MAX = 2**32 - 1  # numpy's seeds stop here
ORDER = "Wins over the preset and --config; a typed flag wins over it, and must agree with it."
DEVICE = typer.Option(None, "--device", help=DEVICE_HELP)
SEED = typer.Option(None, min=0, max=SEED_MAX, help="Seed (default: 0).")
CONFIG = typer.Option(None, "--config", help="YAML/JSON settings file (e.g. a run's config.json); --set and flags win.")
PRINT_CONFIG = typer.Option(
    False, "--print-config", help="Print the resolved settings (YAML) and exit; no data or output is touched."
)
GENERATOR = typer.Option(None, help="Causal LM: hub id, folder, smollm2-135m, tiny-gpt2.")
LEARNER = typer.Option(None, help="Encoder classifier: hub id, folder, minilm, tiny-bert.")
QUIET = typer.Option(False, help="No progress bars.")


def sets_option(example: str) -> Any:
    return typer.Option([], "--set", help=f"Any setting as section.key=value, e.g. --set {example}. {ORDER}")


def settings_options(set_example: str) -> Callable[..., SettingsOptions]:
    """The options every command ends with: where else its settings come from (`set_example` is the --set its
    help shows)."""

    def options(
        config: Path = CONFIG, set_: list[str] = sets_option(set_example), print_config: bool = PRINT_CONFIG
    ) -> SettingsOptions:
        return SettingsOptions(config, set_, print_config)

    return options


@app.command()
@option_groups(settings=settings_options("gm.outer_loops=50"))
def run(
    *,
    dataset: str = typer.Option(None, help="fine_foods (default), sst2, qqp, mnli, or a .csv/.tsv/.jsonl file."),
    dpc: list[int] = typer.Option([], min=1, help="Data per class; repeat for several (e.g. --dpc 5 --dpc 10)."),
    preset: str = typer.Option(
        None,
        help="quick (2-core CPU, minutes; the default, unless --config names another), demo (quick with the "
        "shipped SmolLM2 generators) or paper (GPU).",
    ),
    out: Path = typer.Option(..., help="Run directory (created, or resumed when it exists)."),
    seed: int = typer.Option(
        None, min=0, max=SEED_MAX, help="The one seed for every random choice (default: the preset's, 0)."
    ),
    data_path: Path = typer.Option(None, help="Local data: GLUE TSV folder for sst2/qqp/mnli, or a table file."),
    test_path: Path = typer.Option(None, help="Separate test file for table data (else carved from data)."),
    text_column: list[str] = typer.Option([], help="Text column(s) of table data; two for sentence pairs."),
    label_column: str = typer.Option(None, help="Label column of table data (default 'label')."),
    generator: str = GENERATOR,
    learner: str = LEARNER,
    device: str = DEVICE,
    settings: SettingsOptions,
    quiet: bool = QUIET,
) -> None:
    """Train the generator (stage 1 + gradient matching), build sets, run baselines, evaluate, plot."""
    from distillkit.text.api import resolve_text_config
    from distillkit.text.pipeline import run_dilm

    path = data_path
    if data_path is None and dataset and Path(dataset).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        path = Path(dataset)
    flags = typed_flags(
        dataset=dataset,
        dpcs=dpc or None,
        seed=seed,
        data_path=str(path) if path else None,
        test_path=str(test_path) if test_path else None,
        label_column=label_column,
        generator=generator,
        learner=learner,
        device=device,
    )
    flags.update(dpcs=("--dpc", dpc or None), text_columns=("--text-column", text_column or None))
    cfg = resolve_text_config(preset, settings.config, settings.sets, flags)
    if settings.begin(cfg, out) is None:
        return
    metrics = run_dilm(cfg, out, progress=not quiet)
    if metrics is None:
        return  # another torchrun process than rank 0: rank 0 prints the table
    _print_table(metrics)
    typer.echo(f"run directory: {out} (metrics.json, accuracy_vs_dpc.png, sets/)")


@app.command()
@option_groups(settings=settings_options("gm.outer_loops=8"))
def tune(
    *,
    dataset: str = typer.Option(None, help="fine_foods (default), sst2, qqp, mnli, or a .csv/.tsv/.jsonl file."),
    dpc: int = typer.Option(10, min=1, help="Data per class the stage-2 settings are chosen for."),
    trials: int = typer.Option(12, min=1, help="Trials in all (finished ones are kept when the search is resumed)."),
    preset: str = typer.Option(None, help="quick (the default, unless --config names another) or paper."),
    out: Path = typer.Option(Path("runs/text_tune"), help="Search folder: study.db, shared/, trials/, preset.yaml."),
    seed: int = SEED,
    generator: str = GENERATOR,
    learner: str = LEARNER,
    device: str = DEVICE,
    settings: SettingsOptions,
    quiet: bool = QUIET,
) -> None:
    """Choose stage 2's generator lr, length and class-token multiplier on the validation split (Optuna,
    resumable); stage 1 is trained once. Writes OUT/preset.yaml for `distill text run --config`."""
    from distillkit.text.api import resolve_text_config
    from distillkit.text.tune import tune as run_tune

    flags = typed_flags(dataset=dataset, seed=seed, generator=generator, learner=learner, device=device)
    if dataset and Path(dataset).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        flags["data_path"] = ("--dataset", dataset)
    cfg = resolve_text_config(preset, settings.config, settings.sets, flags)
    if settings.begin(cfg, out) is None:
        return
    summary = run_tune(cfg, dpc, trials, out, progress=not quiet)
    best = summary["best"]
    typer.echo(
        f"best of {len(summary['trials'])} trials: validation {best['val_acc']:.2f} % "
        f"(± {best['val_std']:.2f} over {best['val_runs']} runs) with {best['params']}"
    )
    typer.echo(f"settings: {summary['preset_file']} (use with distill text run --config)")


@app.command()
@option_groups(settings=settings_options("oversample=20"))
def generate(
    *,
    generator: Path = typer.Option(..., help="A saved generator folder (e.g. RUN/generator_dilm)."),
    dpc: int = typer.Option(None, min=1, help="Texts per class to keep (required, here or in --config)."),
    out: Path = typer.Option(..., help="Folder for texts.jsonl, hf/ and provenance.json."),
    oversample: int = typer.Option(None, min=1, help="Candidates per kept text (default: 100)."),
    encoder: str = typer.Option(None, help="Selection encoder for K-means-medoid selection (default: minilm)."),
    label_names: str = typer.Option(None, help="Comma-separated class names (default 0,1,...)."),
    seed: int = SEED,
    device: str = DEVICE,
    settings: SettingsOptions,
) -> None:
    """Write a distilled set of any DPC from a trained generator (one generator serves every DPC)."""
    from distillkit.text.jobs import TextGenerateJob

    names = label_names.split(",") if label_names else None
    flags = typed_flags(dpc=dpc, oversample=oversample, encoder=encoder, label_names=names, seed=seed, device=device)
    job = resolve(TextGenerateJob, None, settings.config, settings.sets, flags)
    if settings.printed(job):
        return
    if job.dpc is None:
        raise UserError("pass --dpc N (texts per class to keep)")
    dev = str(resolve_device(job.device))
    from distillkit.data.text import TextDataset
    from distillkit.text.coreset import SelectionEncoder
    from distillkit.text.generator import Generator
    from distillkit.text.synthetic import generate_set, save_text_set

    if not generator.is_dir():
        raise UserError(f"--generator {generator} is not a folder; pass a saved generator, e.g. RUN/generator_dilm")
    make_dir(out)
    gen = Generator.load(generator, dev)
    names = job.label_names or [str(c) for c in range(gen.num_classes)]
    fields = ["text"] if gen.num_fields == 1 else ["text", "text_pair"]
    template = TextDataset([], [], names, fields, "generated")
    encoder_model = SelectionEncoder(job.encoder, gen.max_length, device=dev)
    small = generate_set(gen, encoder_model, template, job.dpc, job.oversample, job.seed, progress=True)
    prov = {
        "method": "generated",
        "generator_checkpoint": str(generator),
        "dpc": job.dpc,
        "oversample": job.oversample,
        "selection": "kmeans_medoid",
        "selection_encoder": job.encoder,
        "seed": job.seed,
        "label_names": names,
        "text_fields": fields,
    }
    save_text_set(small, out, prov)
    typer.echo(f"wrote {len(small)} texts to {out}")


@app.command("eval")
@option_groups(settings=settings_options("steps=200"))
def eval_(
    *,
    set_path: Path = typer.Option(..., help="A saved text set folder (texts.jsonl + provenance.json)."),
    dataset: str = typer.Option(None, help="The dataset whose test split scores the set (default: fine_foods)."),
    learner: str = typer.Option(None, help="Learner architecture to fine-tune (default: minilm)."),
    runs: int = typer.Option(None, min=1, help="Fresh fine-tuning runs (default: 10)."),
    steps: int = typer.Option(None, min=1, help="Fine-tuning steps per run (default: 100)."),
    lr: float = typer.Option(None, help="Learning rate (default: 1e-4)."),
    max_length: int = typer.Option(None, min=1, help="Learner max tokens (default: 64)."),
    max_test: int = typer.Option(None, min=1, help="Score on a seeded subsample of the test split."),
    train_body: bool = typer.Option(
        None, "--train-body/--frozen-body", help="Fine-tune all (the default), or the head only."
    ),
    seed: int = SEED,
    device: str = DEVICE,
    out: Path = typer.Option(None, help="Write every run's scores and their mean ± std as JSON here."),
    settings: SettingsOptions,
) -> None:
    """Fine-tune fresh learners on a saved set and report test accuracy mean ± std (under torchrun the runs are
    shared over the processes)."""
    from distillkit.text.jobs import TextEvalJob

    flags = typed_flags(
        dataset=dataset,
        learner=learner,
        runs=runs,
        steps=steps,
        lr=lr,
        max_length=max_length,
        max_test=max_test,
        train_body=train_body,
        seed=seed,
        device=device,
    )
    job = resolve(TextEvalJob, None, settings.config, settings.sets, flags)
    dev = settings.begin(job)
    if dev is None:
        return
    if out is not None:
        check_out_file(out)
    from distillkit.data.text import load_text_dataset, subsample
    from distillkit.distributed import is_main, process_group, share_map
    from distillkit.runs import write_json
    from distillkit.seeding import derive_seed
    from distillkit.text.evaluate import FinetuneConfig, evaluate_set, summarize
    from distillkit.text.learner import Learner
    from distillkit.text.synthetic import load_text_set

    small = load_text_set(set_path)
    data = load_text_dataset(job.dataset, seed=job.seed)
    test = subsample(data.test, job.max_test, job.seed)
    ft = FinetuneConfig(steps=job.steps, batch_size=job.batch_size, lr=job.lr, train_body=job.train_body)
    seeds = [derive_seed(job.seed, "cli_eval_run", k) for k in range(job.runs)]
    with process_group(dev) as rank_dev:  # under torchrun run k goes to rank k mod N; all runs come back to each
        lrn = Learner.load(job.learner, data.train.num_classes, job.max_length, job.seed, device=str(rank_dev))
        res = share_map(lambda seed: evaluate_set(lrn, small, test, ft, [seed], data.validation)[0], seeds)
    if not is_main():
        return  # under torchrun rank 0 reports
    s = summarize(res)
    typer.echo(f"{set_path}: accuracy {s['mean']:.2f} ± {s['std']:.2f} over {s['n']} runs ({job.learner})")
    if out is not None:
        write_json(out, {"set": str(set_path), "learner": job.learner, "summary": s, "runs": res})


@app.command()
@option_groups(settings=settings_options("shots_per_class=4"))
def icl(
    *,
    set_path: Path = typer.Option(..., help="A saved text set folder whose texts become the demonstrations."),
    model: str = typer.Option(None, help="Causal LM: smollm2 (the default), a local folder, a .gguf file or a hub id."),
    dataset: str = typer.Option(None, help="The dataset whose test split is scored (default: fine_foods)."),
    shots_per_class: int = typer.Option(None, min=1, help="Demonstrations per class in every prompt (default: 2)."),
    label_words: str = typer.Option(None, help="Comma-separated label words (default: the label names)."),
    max_test: int = typer.Option(None, min=1, help="Score a seeded subsample of the test split (default: 200)."),
    max_tokens: int = typer.Option(
        None, min=1, help="Prompt budget (default: 1024); demonstrations are dropped to fit, never the query."
    ),
    device: str = DEVICE,
    seed: int = SEED,
    settings: SettingsOptions,
) -> None:
    """In-context learning: k-shot prompts from a small set, label-word likelihood on a causal LM."""
    from distillkit.text.jobs import ICLJob

    words = label_words.split(",") if label_words else None
    flags = typed_flags(
        model=model,
        dataset=dataset,
        shots_per_class=shots_per_class,
        label_words=words,
        max_test=max_test,
        max_tokens=max_tokens,
        device=device,
        seed=seed,
    )
    job = resolve(ICLJob, None, settings.config, settings.sets, flags)
    dev = settings.begin(job)
    if dev is None:
        return
    from distillkit.data.text import load_text_dataset, subsample
    from distillkit.lm import load_local_lm
    from distillkit.text.icl import icl_evaluate
    from distillkit.text.synthetic import load_text_set

    small = load_text_set(set_path)
    test = subsample(load_text_dataset(job.dataset, seed=job.seed).test, job.max_test, job.seed)
    words = job.label_words or list(test.label_names)
    if len(words) != test.num_classes:
        raise UserError(f"{len(words)} label words for {test.num_classes} classes; pass one word per class")
    lm = load_local_lm(job.model, device=dev, max_length=job.max_tokens)
    res = icl_evaluate(lm, small, test, words, job.shots_per_class, job.seed, job.max_tokens)
    typer.echo(
        f"{set_path}: ICL accuracy {res['accuracy']:.2f} on {len(test)} test texts with {job.model} "
        f"({res['demonstrations']} demonstrations, {res['demonstrations_dropped']} dropped to fit)"
    )


def _print_table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    for learner, res in metrics["learners"].items():
        table = Table(title=f"{metrics['dataset']}: test {metrics['metric']} (%), learner {learner}")
        dpcs = sorted({d for per in res.values() for d in per if d != "all"}, key=int)
        table.add_column("method")
        for d in dpcs:
            table.add_column(f"DPC {d}")
        for method, per in res.items():
            if method == "full":
                table.add_row("full data", *[f"{per['all']['mean']:.1f} ± {per['all']['std']:.1f}"] * len(dpcs))
            else:
                table.add_row(method, *[f"{per[d]['mean']:.1f} ± {per[d]['std']:.1f}" for d in dpcs])
        Console().print(table)
