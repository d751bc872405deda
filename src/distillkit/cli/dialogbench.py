"""`dialogbench`: evaluate LLMs on the 12 DialogBench tasks; import/export data; reports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from distillkit.cli.common import SettingsOptions, option_groups, run_app
from distillkit.devices import DEVICE_HELP
from distillkit.overrides import typed_flags

app = typer.Typer(help="DialogBench: LLMs as human-like dialogue systems.", no_args_is_help=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_")[-60:] or "model"


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    """A JSON object given on the command line, or None."""
    from distillkit.errors import UserError

    if text is None:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{flag} is not valid JSON ({e.msg} at character {e.pos}); e.g. '{{\"top_k\": 20}}'") from None
    if not isinstance(obj, dict):
        raise UserError(f"{flag} must be a JSON object, e.g. '{{\"top_k\": 20}}'")
    return obj


TIMEOUT_HELP = "seconds a server gets to answer one request (a deadline per attempt)"
ORDER = "Wins over --config; a typed flag wins over it, and must agree with it."
CONFIG = typer.Option(None, "--config", help="YAML/JSON settings file (e.g. a run's config.json); --set and flags win.")
PRINT_CONFIG = typer.Option(
    False, "--print-config", help="Print the resolved settings (YAML) and exit; no data or output is touched."
)
PRESET = typer.Option(
    None, "--preset", help="settings to start from: default, or paper (the published protocol; docs/settings.md)"
)


def _config_file(path: Path | None, derived: tuple[str, ...]) -> dict[str, Any]:
    """A --config file's settings without what a run derived from them (e.g. a run's config.json)."""
    from distillkit.settings import read_config_file

    return {k: v for k, v in read_config_file(path).items() if k not in derived} if path else {}


RETRIES_HELP = "tries after the first one per request (429, 5xx, timeouts, dropped connections)"


@dataclass(frozen=True)
class ServerSettingsOptions(SettingsOptions):
    """The settings options of a command that talks to a server, with the --preset its settings start from."""

    preset: str | None = None

    def layered(self, command: str, file: dict[str, Any], flags: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        """The unvalidated settings: the preset of `command` < the --config `file` < --set items < `flags`."""
        from distillkit.dialogbench.presets import preset_settings
        from distillkit.settings import layered

        return layered(preset_settings(command, self.preset, file), None, self.sets, flags)


def server_settings_options(set_example: str) -> Callable[..., ServerSettingsOptions]:
    """The options a command that talks to a server ends with: --timeout, --max-retries, and where else its
    settings come from (`set_example` is the --set its help shows)."""

    def options(
        timeout: float = typer.Option(None, "--timeout", help=TIMEOUT_HELP + " (default: 120)"),
        max_retries: int = typer.Option(None, "--max-retries", help=RETRIES_HELP + " (default: 5)"),
        preset: str = PRESET,
        config: Path = CONFIG,
        set_: list[str] = typer.Option(
            [], "--set", help=f"Any setting as key=value, e.g. --set {set_example}. {ORDER}"
        ),
        print_config: bool = PRINT_CONFIG,
    ) -> ServerSettingsOptions:
        shared = typed_flags(timeout=timeout, max_retries=max_retries)
        return ServerSettingsOptions(config, set_, print_config, shared, preset)

    return options


@app.command("tasks")
def tasks_cmd() -> None:
    """List the 12 tasks (abbreviation, dimension, slot, name)."""
    from distillkit.dialogbench.tasks import all_tasks

    for t in all_tasks().values():
        print(f"{t.abbr:4} {t.dimension:12} {t.slot or '-':11} {t.name}")


@app.command("validate")
def validate_cmd(path: Path = typer.Argument(..., help="instance JSONL file")) -> None:
    """Check an instance JSONL file against the schema (one line per problem found first)."""
    from collections import Counter

    from distillkit.dialogbench.schema import read_jsonl

    items = read_jsonl(path)
    print(f"{path}: {len(items)} valid instances; per task: {dict(Counter(i.task for i in items))}")


@app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="a kwai/DialogBench clone, its data/ folder, or data/data_<lang>"),
    out: Path = typer.Option(..., "--out", help="output JSONL file"),
    lang: str = typer.Option("en", "--lang", help="en or zh"),
    tasks: str = typer.Option(None, "--tasks", help="comma-separated task abbreviations (default: all)"),
) -> None:
    """Import the official release format into validated instance JSONL (+ an import report)."""
    from distillkit.dialogbench.official import import_official
    from distillkit.dialogbench.schema import write_jsonl
    from distillkit.dialogbench.tasks import parse_tasks
    from distillkit.runs import write_json

    instances, report = import_official(src, lang, parse_tasks(tasks))
    write_jsonl(out, instances)
    rep = out.with_suffix(".import.json")
    write_json(rep, report)
    print(
        f"imported {len(instances)} instances to {out}; skipped {len(report['skipped'])}, "
        f"{len(report['warnings'])} warnings (see {rep})"
    )


@app.command("export")
def export_cmd(
    src: Path = typer.Argument(..., help="instance JSONL file (or 'sample')"),
    out: Path = typer.Option(..., "--out", help="output folder (gets data_<lang>/<task file>.json)"),
) -> None:
    """Write instances in the official release format (one JSON Lines file per task)."""
    from distillkit.dialogbench.official import export_official
    from distillkit.dialogbench.schema import load_sample, read_jsonl

    items = load_sample() if str(src) == "sample" else read_jsonl(src)
    paths = export_official(items, out)
    print(f"wrote {len(items)} instances in {len(paths)} files under {out}")


@app.command("eval")
@option_groups(sources=server_settings_options("max_length=4096"))
def eval_cmd(
    *,
    model: str = typer.Option(
        None, "--model", help="HF id, folder, .gguf file, 'smollm2', or a served model name (required)"
    ),
    tasks: str = typer.Option(None, "--tasks", help="comma-separated task abbreviations (default: all 12)"),
    lang: str = typer.Option(None, "--lang", help="en (default) or zh"),
    mode: str = typer.Option(None, "--mode", help="base (option likelihood) or chat (generate + extract; default)"),
    circular: bool = typer.Option(
        None, "--circular/--no-circular", help="ask every instance with the gold in every position (default: no)"
    ),
    gold_swap: bool = typer.Option(
        None,
        "--gold-swap/--no-gold-swap",
        help="ask every instance with the gold text swapped into every letter, the others kept (default: no)",
    ),
    data: str = typer.Option(None, "--data", help="instance JSONL file, or 'sample' (the shipped set; default)"),
    out: Path = typer.Option(None, "--out", help="run folder (default runs/dialogbench/<model>-<mode>-<lang>)"),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (selects that backend)"),
    norm: str = typer.Option(None, "--norm", help="base mode: token (paper perplexity; default), sum, or char"),
    extractor: str = typer.Option(
        None, "--extractor", help="chat headline: strict, lenient (default), anchored, original"
    ),
    prompts: str = typer.Option(
        None,
        "--prompts",
        help="distillkit (templates from the structured fields; default) or official (an imported release's "
        "own prompts, verbatim)",
    ),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="default: 256"),
    batch_size: str = typer.Option(
        None, "--batch-size", help="a number (default: 8), or auto: local models, the largest that fits (GPU)"
    ),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="parallel requests to a server (default: 8)"),
    limit: int = typer.Option(None, "--limit", min=1, help="at most this many instances per task"),
    skip_invalid: bool = typer.Option(
        None, "--skip-invalid/--no-skip-invalid", help="skip bad JSONL lines (listed in metrics; default: no)"
    ),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(
        None, "--dtype", help="local weights: auto (fp32 on CPU, bf16 on GPUs), bf16, fp16, fp32"
    ),
    precision: str = typer.Option(None, "--precision", help="local forward passes: fp32 (default) or bf16 autocast"),
    revision: str = typer.Option(None, "--revision", help="local hub model: the branch, tag or commit to load"),
    trust_remote_code: bool = typer.Option(
        None, "--trust-remote-code/--no-trust-remote-code", help="run a hub model's own modelling code (default: no)"
    ),
    device_map: str = typer.Option(
        None, "--device-map", help="local: auto spreads a model too big for one GPU over all GPUs, then the CPU"
    ),
    peft: str = typer.Option(None, "--peft", help="local: a PEFT/LoRA adapter folder to put on the model"),
    peft_merge: bool = typer.Option(
        None, "--peft-merge/--no-peft-merge", help="merge the --peft adapter into the weights: faster (default: no)"
    ),
    seed: int = typer.Option(None, "--seed", help="default: 0"),
    release_date: str = typer.Option(None, "--release-date", help="model release date, shown next to scores"),
    system_prompt: str = typer.Option(None, "--system-prompt", help="chat mode: sent as the first (system) message"),
    extra_body: str = typer.Option(None, "--extra-body", help="server: JSON object of extra request fields"),
    token_param: str = typer.Option(
        None, "--token-param", help="server: max_tokens (default) or max_completion_tokens (OpenAI reasoning models)"
    ),
    sources: ServerSettingsOptions,
) -> None:
    """Evaluate one model; resumes from the run folder's items.jsonl if it exists."""
    from distillkit.devices import resolve_device
    from distillkit.dialogbench.evaluate import DERIVED, EvalSettings, evaluate
    from distillkit.dialogbench.tasks import parse_tasks
    from distillkit.errors import UserError
    from distillkit.settings import validate

    values = {
        "model": model,
        "base_url": base_url,
        "mode": mode,
        "lang": lang,
        "tasks": [t.abbr for t in parse_tasks(tasks)] if tasks is not None else None,
        "data": data,
        "circular": circular,
        "gold_swap": gold_swap,
        "norm": norm,
        "extractor": extractor,
        "prompts": prompts,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "concurrency": concurrency,
        "seed": seed,
        "limit": limit,
        "skip_invalid": skip_invalid,
        "device": device,
        "dtype": dtype,
        "precision": precision,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "device_map": device_map,
        "peft": peft,
        "peft_merge": peft_merge,
        "release_date": release_date,
        "system_prompt": system_prompt,
        "extra_body": _json_object(extra_body, "--extra-body"),
        "token_param": token_param,
    }
    flags = typed_flags(**values) | sources.flags
    raw = sources.layered("eval", _config_file(sources.config, DERIVED), flags)
    if not raw.get("model"):
        raise UserError("pass --model NAME (an HF id, folder, .gguf file, 'smollm2' or a served model name)")
    raw.setdefault("backend", "openai" if raw.get("base_url") else "local")
    raw["tasks"] = [t.abbr for t in parse_tasks(raw.get("tasks") or None)]
    settings = validate(EvalSettings, raw, flags)
    if sources.printed(settings.saved()):
        return
    if settings.backend == "local":
        resolve_device(settings.device)
    s = settings
    moved = "-circular" if s.circular else "-goldswap" if s.gold_swap else ""
    official = "-official" if s.prompts == "official" else ""
    out = out or Path("runs/dialogbench") / f"{_slug(s.model)}-{s.mode}-{s.lang}{moved}{official}"
    m = evaluate(settings, out)
    print(
        f"{s.model} [{s.mode}, {s.lang}, {settings.headline}, {s.prompts} prompts]: overall {m['overall']} "
        f"over {len(m['tasks'])} tasks ({m['n_done']}/{m['n_items']} items); results in {out} (report.html)"
    )
    for abbr, t in m["tasks"].items():
        extra = f"  unparsed {t['unparsed']}" if "unparsed" in t else ""
        circ = f"  circular {t['circular_accuracy']}" if "circular_accuracy" in t else ""
        print(f"  {abbr:4} {t['accuracy']:6.2f}  (n={t['n']}){circ}{extra}")
    if m["skipped"]:
        print(f"skipped {len(m['skipped'])} instances (listed in {out / 'metrics.json'})")


@app.command("report")
def report_cmd(
    runs: list[Path] = typer.Argument(..., help="run folders written by `dialogbench eval`"),
    out: Path = typer.Option(Path("runs/dialogbench/report"), "--out", help="report folder"),
) -> None:
    """Compare runs side by side: markdown + CSV table, per-task bars, radar and letter plots."""
    from distillkit.dialogbench.report import write_report

    md = write_report(runs, out)
    print(f"wrote {md} and {out / 'report.html'} (+ CSV and plots in {out})")


@app.command("compare")
def compare_cmd(
    run_a: Path = typer.Argument(..., help="run folder written by `dialogbench eval`"),
    run_b: Path = typer.Argument(..., help="another run folder on the same items"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the paired bootstrap"),
    boot: int = typer.Option(1000, "--boot", min=100, help="bootstrap resamples"),
    out: Path = typer.Option(None, "--out", help="also write the comparison here (.md, with a .json beside it)"),
) -> None:
    """Paired comparison of two runs on their shared items: difference with a 95% CI and McNemar's test."""
    from distillkit.dialogbench.report import load_run, run_label
    from distillkit.dialogbench.stats import compare_run_dirs, render_comparison
    from distillkit.runs import check_out_file, write_json

    if out is not None:
        check_out_file(out)
    cmp = compare_run_dirs(run_a, run_b, seed, boot)
    md = render_comparison(cmp, run_label(load_run(run_a)), run_label(load_run(run_b)))
    print(md)
    if out is not None:
        out.write_text(md)
        write_json(out.with_suffix(".json"), cmp)
        print(f"wrote {out} and {out.with_suffix('.json')}")


@app.command("fetch")
def fetch_cmd(
    lang: str = typer.Option("en", "--lang", help="en or zh"),
    out: Path = typer.Option(
        ..., "--out", help="folder for data/data_<lang>/ and dialogbench_<lang>.jsonl (a rerun resumes)"
    ),
    base_url: str = typer.Option(
        None,
        "--base-url",
        help="release root serving data/data_<lang>/<file> (default: kwai/DialogBench on GitHub; or a mirror)",
    ),
) -> None:
    """Download the published DialogBench files of one language, check their sha256, and import them."""
    from distillkit.dialogbench.fetch import fetch_release

    fetch_release(lang, out, base_url)


@app.command("export-lm-eval")
def export_lm_eval_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the task YAML files and data"),
    data: str = typer.Option("sample", "--data", help="instance JSONL file, or 'sample'"),
    lang: str = typer.Option("en", "--lang"),
    mode: str = typer.Option(
        "base",
        "--mode",
        help="base: multiple choice by option likelihood; chat: generate_until tasks read by distillkit's answer "
        "extractor (for local-chat-completions)",
    ),
) -> None:
    """Export the 12 tasks as lm-evaluation-harness task YAML (run with `lm_eval --include_path OUT`)."""
    from distillkit.dialogbench.lmeval_export import export_lm_eval

    files = export_lm_eval(out, data=data, lang=lang, mode=mode)
    if mode == "chat":
        hint = (
            "lm_eval --model local-chat-completions --model_args model=NAME,base_url=URL/v1/chat/completions,"
            f"tokenizer_backend=None --apply_chat_template --include_path {out} --tasks dialogbench_chat_{lang}"
        )
    else:
        hint = f"lm_eval --include_path {out} --tasks dialogbench_{lang} ..."
    print(f"wrote {len(files)} files to {out}; run: {hint}")


@app.command("prepare-model")
def prepare_model_cmd() -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF once into a cached fp32 HF folder; print its path."""
    from distillkit.lm.offline import smollm2_folder

    print(smollm2_folder(verbose=True))


@app.command("generate")
@option_groups(sources=server_settings_options("temperature=0.7"))
def generate_cmd(
    *,
    llm: str = typer.Option(None, "--llm", help="generator model name as the server knows it (required)"),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (default $OPENAI_BASE_URL)"),
    tasks: str = typer.Option(None, "--tasks", help="comma-separated task abbreviations (default: all 12)"),
    per_task: int = typer.Option(
        None, "--per-task", help="instances planned per task (a multiple of the 20 domains; default: 20)"
    ),
    lang: str = typer.Option(None, "--lang", help="en (default) or zh"),
    out: Path = typer.Option(..., "--out", help="output folder (resumed if it exists)"),
    judge_llm: str = typer.Option(None, "--judge-llm", help="model of the blind-answer filter (default: --llm)"),
    judge_base_url: str = typer.Option(None, "--judge-base-url", help="server of the judge (default: --base-url)"),
    no_judge: bool = typer.Option(False, "--no-judge", help="skip the LLM filter (no-LLM checks still run)"),
    rounding: str = typer.Option(None, "--round", help="up or down: round --per-task to a multiple of 20"),
    no_domain_balance: bool = typer.Option(False, "--no-domain-balance", help="let the model pick the topic"),
    no_style_mitigation: bool = typer.Option(False, "--no-style-mitigation", help="no speaker style instruction"),
    no_position_balance: bool = typer.Option(
        False, "--no-position-balance", help="let the model place the correct option"
    ),
    no_json_schema: bool = typer.Option(False, "--no-json-schema", help="for servers without response_format"),
    n_options: int = typer.Option(None, "--options", help="options per question (2-4; default: 4)"),
    seed: int = typer.Option(None, "--seed", help="default: 0"),
    temperature: float = typer.Option(None, "--temperature", help="default: 1.0"),
    presence_penalty: float = typer.Option(None, "--presence-penalty", help="default: 0.6"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1, help="default: 2048"),
    max_attempts: int = typer.Option(None, "--max-attempts", help="tries per instance (first + repairs; default: 3)"),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="parallel requests (default: 8)"),
    max_requests: int = typer.Option(None, "--max-requests", help="stop after this many requests (this run)"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="stop once this many tokens were used (this run)"),
    sources: ServerSettingsOptions,
) -> None:
    """Generate a new, bias-mitigated, filtered DialogBench with any OpenAI-compatible LLM (resumable)."""
    from pydantic import ValidationError

    from distillkit.dialogbench.generate.run import generate, resolve
    from distillkit.dialogbench.generate.settings import DERIVED, GenSettings
    from distillkit.errors import UserError
    from distillkit.settings import explain

    values = {
        "llm": llm,
        "base_url": base_url,
        "tasks": tasks,
        "per_task": per_task,
        "lang": lang,
        "judge_llm": judge_llm,
        "judge_base_url": judge_base_url,
        "judge": False if no_judge else None,
        "domain_balance": False if no_domain_balance else None,
        "style_mix": False if no_style_mitigation else None,
        "position_balance": False if no_position_balance else None,
        "json_schema": False if no_json_schema else None,
        "n_options": n_options,
        "seed": seed,
        "temperature": temperature,
        "presence_penalty": presence_penalty,
        "max_new_tokens": max_new_tokens,
        "max_attempts": max_attempts,
        "concurrency": concurrency,
        "max_requests": max_requests,
        "max_tokens": max_tokens,
    }
    flags = typed_flags(**values) | sources.flags
    flags.update(n_options=("--options", n_options), judge=("--no-judge", values["judge"]))
    file = _config_file(sources.config, DERIVED)
    if "requested_per_task" in file:  # a run's config.json: the count asked for, rounded again below
        file["per_task"] = file.pop("requested_per_task")
    raw = sources.layered("generate", file, flags)
    if not raw.get("llm"):
        raise UserError("pass --llm NAME (the generator model as the server knows it)")
    per = raw.pop("per_task", 20)
    if not isinstance(per, int) or per < 1:
        raise UserError(f"--per-task must be at least 1, got {per!r}")
    try:
        s = resolve(
            raw.pop("llm"),
            raw.pop("tasks", None),
            per,
            raw.pop("lang", "en"),
            rounding,
            domain_balance=raw.pop("domain_balance", True),
            **raw,
        )
    except ValidationError as e:
        raise UserError(explain(e, GenSettings, flags)) from None
    if sources.printed(s.saved()):
        return
    if s.rounding_note:
        print(s.rounding_note)
    summ = generate(s, out)
    u = summ["usage"]
    print(
        f"accepted {summ['accepted']} of {summ['planned']} planned ({summ['generated']} generated, "
        f"{summ['repaired']} after a repair); "
        f"rejected {summ['rejected']}: {summ['rejected_by_reason'] or 'none'}"
    )
    print(
        f"tokens: {u['prompt_tokens']} prompt + {u['completion_tokens']} completion in {u['requests']} requests "
        f"({u['cache_hits']} from cache, {u['retries']} retries); {summ['seconds']} s"
    )
    if summ["budget_reached"]:
        print("budget reached; run the same command again (with a higher --max-requests/--max-tokens) to continue")
    print(
        f"instances: {out / 'instances.jsonl'} (evaluate with: dialogbench eval --data {out / 'instances.jsonl'} "
        f"--lang {lang} ...); rejects: {out / 'rejects.jsonl'}; datasheet: {out / 'datasheet.md'}"
    )


cache_app = typer.Typer(help="The on-disk cache of server responses.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear_cmd(
    path: Path = typer.Argument(
        None, help="cache folder (or the folder holding responses/); default: the distillkit cache"
    ),
) -> None:
    """Empty a response cache folder and say how many entries were removed."""
    from distillkit.lm.cache import clear_cache
    from distillkit.runs import cache_dir

    folder, n = clear_cache(path or cache_dir() / "responses")
    if n is None:
        print(f"{folder} was unreadable (corrupt); removed its files, the cache starts empty")
    else:
        print(f"removed {n} entries from {folder}")


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
