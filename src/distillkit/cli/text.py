"""`distill text ...`: DiLM text dataset distillation.

`distill text run` settings, lowest to highest: the preset (or `--config`), `--set key=value`, the flags typed;
a typed flag and a `--set` of the same key that disagree are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from distillkit.errors import UserError
from distillkit.overrides import check_conflicts
from distillkit.runs import make_dir

app = typer.Typer(no_args_is_help=True, help="DiLM: distil a text classification set into a generator LM.")

SEED_MAX = 2**32 - 1  # numpy's seeds stop here


@app.command()
def run(
    dataset: str = typer.Option(None, help="fine_foods (default), sst2, qqp, mnli, or a .csv/.tsv/.jsonl file."),
    dpc: list[int] = typer.Option([], min=1, help="Data per class; repeat for several (e.g. --dpc 5 --dpc 10)."),
    preset: str = typer.Option("quick", help="quick (2-core CPU, minutes) or paper (published settings, GPU)."),
    out: Path = typer.Option(..., help="Run directory (created, or resumed when it exists)."),
    seed: int = typer.Option(
        None, min=0, max=SEED_MAX, help="The one seed for every random choice (default: the preset's, 0)."
    ),
    data_path: Path = typer.Option(None, help="Local data: GLUE TSV folder for sst2/qqp/mnli, or a table file."),
    test_path: Path = typer.Option(None, help="Separate test file for table data (else carved from data)."),
    text_column: list[str] = typer.Option([], help="Text column(s) of table data; two for sentence pairs."),
    label_column: str = typer.Option(None, help="Label column of table data (default 'label')."),
    generator: str = typer.Option(None, help="Causal LM: hub id, folder, smollm2-135m, tiny-gpt2."),
    learner: str = typer.Option(None, help="Encoder classifier: hub id, folder, minilm, tiny-bert."),
    device: str = typer.Option(None, help="cpu or cuda."),
    config: Path = typer.Option(None, help="Start from this config.json instead of a preset."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a setting: key=value (dotted for nested); a typed flag of the same key must agree."
    ),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train the generator (stage 1 + gradient matching), build sets, run baselines, evaluate, plot."""
    from distillkit.text.api import build_config
    from distillkit.text.pipeline import run_dilm

    path = data_path
    if data_path is None and dataset and Path(dataset).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        path = Path(dataset)
    fields = {
        "data_path": str(path) if path else None,
        "test_path": str(test_path) if test_path else None,
        "text_columns": text_column or None,
        "label_column": label_column,
        "generator": generator,
        "learner": learner,
        "device": device,
    }
    flags = {k: (f"--{k.replace('_', '-')}", v) for k, v in fields.items()}
    flags.update(
        dataset=("--dataset", dataset),
        dpcs=("--dpc", dpc or None),
        seed=("--seed", seed),
        text_columns=("--text-column", fields["text_columns"]),
    )
    check_conflicts(set_, flags)
    if config and dataset:  # a typed --dataset wins over the config file's
        set_ = [*set_, f"dataset={json.dumps(dataset)}"]
    cfg = build_config(dataset or "fine_foods", preset, dpc or None, seed, config, set_, **fields)
    make_dir(out)
    metrics = run_dilm(cfg, out, progress=not quiet)
    _print_table(metrics)
    typer.echo(f"run directory: {out} (metrics.json, accuracy_vs_dpc.png, sets/)")


@app.command()
def generate(
    generator: Path = typer.Option(..., help="A saved generator folder (e.g. RUN/generator_dilm)."),
    dpc: int = typer.Option(..., min=1, help="Texts per class to keep."),
    out: Path = typer.Option(..., help="Folder for texts.jsonl, hf/ and provenance.json."),
    oversample: int = typer.Option(100, min=1, help="Candidates per kept text."),
    encoder: str = typer.Option("minilm", help="Selection encoder for K-means-medoid selection."),
    label_names: str = typer.Option(None, help="Comma-separated class names (default 0,1,...)."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed."),
) -> None:
    """Write a distilled set of any DPC from a trained generator (one generator serves every DPC)."""
    from distillkit.data.text import TextDataset
    from distillkit.text.coreset import SelectionEncoder
    from distillkit.text.generator import Generator
    from distillkit.text.synthetic import generate_set, save_text_set

    if not generator.is_dir():
        raise UserError(f"--generator {generator} is not a folder; pass a saved generator, e.g. RUN/generator_dilm")
    make_dir(out)
    gen = Generator.load(generator)
    names = label_names.split(",") if label_names else [str(c) for c in range(gen.num_classes)]
    fields = ["text"] if gen.num_fields == 1 else ["text", "text_pair"]
    template = TextDataset([], [], names, fields, "generated")
    small = generate_set(gen, SelectionEncoder(encoder, gen.max_length), template, dpc, oversample, seed, progress=True)
    prov = {
        "method": "generated",
        "generator_checkpoint": str(generator),
        "dpc": dpc,
        "oversample": oversample,
        "selection": "kmeans_medoid",
        "selection_encoder": encoder,
        "seed": seed,
        "label_names": names,
        "text_fields": fields,
    }
    save_text_set(small, out, prov)
    typer.echo(f"wrote {len(small)} texts to {out}")


@app.command("eval")
def eval_(
    set_path: Path = typer.Option(..., help="A saved text set folder (texts.jsonl + provenance.json)."),
    dataset: str = typer.Option("fine_foods", help="The dataset whose test split scores the set."),
    learner: str = typer.Option("minilm", help="Learner architecture to fine-tune."),
    runs: int = typer.Option(10, min=1, help="Fresh fine-tuning runs."),
    steps: int = typer.Option(100, min=1, help="Fine-tuning steps per run."),
    lr: float = typer.Option(1e-4, help="Learning rate."),
    max_length: int = typer.Option(64, min=1, help="Learner max tokens."),
    max_test: int = typer.Option(None, min=1, help="Score on a seeded subsample of the test split."),
    train_body: bool = typer.Option(True, "--train-body/--frozen-body", help="Fine-tune all, or the head only."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed."),
) -> None:
    """Fine-tune fresh learners on a saved set and report test accuracy mean ± std."""
    if not (set_path / "provenance.json").exists():
        raise UserError(f"{set_path} is not a saved text set (no provenance.json); pass a folder under RUN/sets/")
    from distillkit.data.text import load_text_dataset, subsample
    from distillkit.seeding import derive_seed
    from distillkit.text.evaluate import FinetuneConfig, evaluate_set, summarize
    from distillkit.text.learner import Learner
    from distillkit.text.synthetic import load_text_set

    small = load_text_set(set_path)
    data = load_text_dataset(dataset, seed=seed)
    test = subsample(data.test, max_test, seed)
    lrn = Learner.load(learner, data.train.num_classes, max_length, seed)
    res = evaluate_set(
        lrn,
        small,
        test,
        FinetuneConfig(steps=steps, batch_size=64, lr=lr, train_body=train_body),
        [derive_seed(seed, "cli_eval_run", k) for k in range(runs)],
        data.validation,
    )
    s = summarize(res)
    typer.echo(f"{set_path}: accuracy {s['mean']:.2f} ± {s['std']:.2f} over {s['n']} runs ({learner})")


@app.command()
def icl(
    set_path: Path = typer.Option(..., help="A saved text set folder whose texts become the demonstrations."),
    model: str = typer.Option("smollm2", help="Causal LM: smollm2, a local folder, a .gguf file or a hub id."),
    dataset: str = typer.Option("fine_foods", help="The dataset whose test split is scored."),
    shots_per_class: int = typer.Option(2, min=1, help="Demonstrations per class in every prompt."),
    label_words: str = typer.Option(None, help="Comma-separated label words (default: the label names)."),
    max_test: int = typer.Option(200, min=1, help="Score a seeded subsample of the test split."),
    max_tokens: int = typer.Option(
        1024, min=1, help="Prompt budget; demonstrations are dropped to fit, never the query."
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed."),
) -> None:
    """In-context learning: k-shot prompts from a small set, label-word likelihood on a causal LM."""
    if not (set_path / "provenance.json").exists():
        raise UserError(f"{set_path} is not a saved text set (no provenance.json); pass a folder under RUN/sets/")
    from distillkit.data.text import load_text_dataset, subsample
    from distillkit.lm import load_local_lm
    from distillkit.text.icl import icl_evaluate
    from distillkit.text.synthetic import load_text_set

    small = load_text_set(set_path)
    test = subsample(load_text_dataset(dataset, seed=seed).test, max_test, seed)
    words = label_words.split(",") if label_words else list(test.label_names)
    if len(words) != test.num_classes:
        raise UserError(f"{len(words)} label words for {test.num_classes} classes; pass one word per class")
    lm = load_local_lm(model, device=device, max_length=max_tokens)
    res = icl_evaluate(lm, small, test, words, shots_per_class, seed, max_tokens)
    typer.echo(
        f"{set_path}: ICL accuracy {res['accuracy']:.2f} on {len(test)} test texts with {model} "
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
