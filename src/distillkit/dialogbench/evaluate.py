"""Evaluate one model on DialogBench instances: base (likelihood) or chat (generation + extraction).

Every evaluated item goes to `items.jsonl` in the run directory as soon as it is done; running the
same command again skips finished items, so a killed run resumes without repeats or losses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from distillkit.devices import DEVICE_HELP
from distillkit.dialogbench.aggregate import summarize
from distillkit.dialogbench.extract import extract
from distillkit.dialogbench.itemlog import ItemLog
from distillkit.dialogbench.positions import gold_swap
from distillkit.dialogbench.render import Prompts, base_prompt, chat_prompt
from distillkit.dialogbench.schema import Instance, load_sample, read_jsonl_lenient, sample_path
from distillkit.dialogbench.tasks import check_lang, parse_tasks
from distillkit.errors import UserError
from distillkit.lm import LanguageModel
from distillkit.lm.completions import ServerError
from distillkit.lm.config import GenerationConfig
from distillkit.lm.reasoning import answer_text
from distillkit.lm.secrets import mask_url
from distillkit.progress import progress as progress_bar
from distillkit.report import write_report_html
from distillkit.runs import Run, file_digest

# may differ between a run and its resumption (the preset only names where the settings came from)
RESUMABLE = ("timeout", "max_retries", "preset")
# written beside the settings in config.json, not settings themselves
DERIVED = ("generation",)  # the data and model hashes are settings.RECORDED, left out by every --config reader


def batch_size_setting(value: Any) -> int | str:
    """A batch size: a positive integer, or "auto" (local models: the largest that fits, found once)."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    raise ValueError("should be a positive integer or 'auto'")


class EvalSettings(BaseModel):
    """The full, resolved configuration of one evaluation run (saved as config.json)."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "default"  # the preset the settings started from (presets/dialogbench/)
    model: str
    backend: Literal["local", "openai"] = "local"
    base_url: str | None = None
    mode: Literal["base", "chat"] = "chat"
    lang: Literal["en", "zh"] = "en"
    tasks: list[str] = Field(default_factory=list)
    data: str = "sample"
    circular: bool = False
    gold_swap: bool = False  # the gold text trades places with each option in turn (spec: position-balanced mode)
    norm: Literal["token", "sum", "char"] = "token"
    extractor: Literal["strict", "lenient", "anchored", "original"] = "lenient"
    # official: an imported instance is asked with the release's own prompts, verbatim (changes the results)
    prompts: Prompts = "distillkit"
    max_new_tokens: int = 256
    max_length: int = 2048
    batch_size: Annotated[int | str, PlainValidator(batch_size_setting)] = 8
    concurrency: int = 8
    seed: int = 0
    limit: int | None = None
    skip_invalid: bool = False
    device: str | None = Field("auto", description=DEVICE_HELP)  # None, as saved by older runs: auto
    release_date: str | None = None  # shown next to the scores (data public since 2023: contamination)
    system_prompt: str | None = None  # chat mode: sent as the first message
    # servers only; None keeps the defaults, so runs saved before these settings existed still resume
    extra_body: dict[str, Any] | None = None  # more request fields, passed through as they are
    token_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    timeout: float = Field(120.0, gt=0)  # seconds per request attempt (may change on resume)
    max_retries: int = Field(5, ge=0)  # may change on resume
    dtype: Literal["auto", "bf16", "fp16", "fp32"] | None = None  # local weights (None: fp32 on CPU, bf16 on GPUs)
    precision: Literal["fp32", "bf16"] | None = None  # local forward passes under bf16 autocast (None: fp32)
    revision: str | None = None  # local hub models: a branch, tag or commit
    trust_remote_code: bool | None = None  # local hub models: run their own modelling code (None: no)
    device_map: Literal["auto"] | None = None  # local: accelerate spreads the weights over GPUs, then CPU
    peft: str | None = None  # local: a PEFT/LoRA adapter folder put on the weights
    peft_merge: bool | None = None  # local: merge the adapter into the weights (None: no)

    def saved(self) -> dict:
        """The settings as written to config.json (credentials in the URL masked)."""
        return self.model_dump() | {"base_url": mask_url(self.base_url)}

    @property
    def headline(self) -> str:
        return self.norm if self.mode == "base" else self.extractor

    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, seed=self.seed)


@dataclass(frozen=True)
class Unit:
    """One question as asked: an instance with its options in one rotation."""

    inst: Instance
    rotation: int
    options: dict[str, str]
    gold: str

    @property
    def key(self) -> str:
        return f"{self.inst.id}#r{self.rotation}"


def rotate(inst: Instance, k: int) -> tuple[dict[str, str], str]:
    """Options rotated by k positions (the gold answer moves with its text)."""
    letters = list(inst.options)
    texts = list(inst.options.values())
    texts = texts[k:] + texts[:k]
    opts = dict(zip(letters, texts, strict=True))
    gold = letters[(letters.index(inst.label) - k) % len(letters)]
    return opts, gold


def make_units(instances: list[Instance], circular: bool, swap: bool = False) -> list[Unit]:
    """One unit per instance, or one per position of the gold letter: by rotating every option (`circular`)
    or by swapping the gold text with the option at each letter in turn (`swap`)."""
    variant = gold_swap if swap else rotate
    units = []
    for inst in instances:
        for k in range(len(inst.options) if circular or swap else 1):
            opts, gold = variant(inst, k)
            units.append(Unit(inst, k, opts, gold))
    return units


def load_instances(settings: EvalSettings) -> tuple[list[Instance], list[dict], str]:
    """Instances selected by task/language/limit, the skipped (invalid) lines, and the data hash."""
    if settings.data == "sample":
        path = sample_path()
        instances, skipped = load_sample(), []
    else:
        path = Path(settings.data)
        instances, skipped = read_jsonl_lenient(path, skip_invalid=settings.skip_invalid)
    wanted = {t.abbr for t in parse_tasks(settings.tasks or None)}
    check_lang(settings.lang)
    chosen = [i for i in instances if i.task in wanted and i.language == settings.lang]
    if settings.limit:
        per: dict[str, int] = {}
        kept = []
        for i in chosen:
            per[i.task] = per.get(i.task, 0) + 1
            if per[i.task] <= settings.limit:
                kept.append(i)
        chosen = kept
    if not chosen:
        raise UserError(
            f"no {settings.lang} instances of tasks {sorted(wanted)} in {path}; check --tasks/--lang/--data"
        )
    return chosen, skipped, file_digest(path)


def load_backend(settings: EvalSettings):
    """The model behind the run: a LocalLM or an OpenAI-compatible client."""
    if settings.backend == "openai":  # base mode needs /v1/completions with echo + logprobs (e.g. vLLM)
        from distillkit.lm.openai_compat import OpenAICompatLM

        return OpenAICompatLM(
            model=settings.model,
            base_url=settings.base_url,
            concurrency=settings.concurrency,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
            token_param=settings.token_param or "max_tokens",
            extra_body=settings.extra_body,
        )
    if settings.extra_body or settings.token_param:
        raise UserError("--extra-body and --token-param are request fields for a server; add --base-url")
    from distillkit.lm.local import load_local_lm

    return load_local_lm(
        settings.model,
        device=settings.device,
        dtype=None if settings.dtype in (None, "auto") else settings.dtype,
        max_length=settings.max_length,
        batch_size=settings.batch_size,
        precision=settings.precision or "fp32",
        revision=settings.revision,
        trust_remote_code=bool(settings.trust_remote_code),
        device_map=settings.device_map,
        peft=settings.peft,
        peft_merge=bool(settings.peft_merge),
    )


def _score(option: dict, norm: str) -> float:
    if norm == "sum":
        return option["logprob"]
    if norm == "char":
        return option["logprob"] / max(option["n_chars"], 1)
    return option["logprob"] / max(option["n_tokens"], 1)


def predict_base(scores: dict[str, dict]) -> dict[str, str]:
    """Best letter under each normalisation (first letter wins ties, as in the reference)."""
    return {n: max(scores, key=lambda k, n=n: (_score(scores[k], n), -ord(k))) for n in ("token", "sum", "char")}


def check_prompts(units: list[Unit], settings: EvalSettings) -> None:
    """Render every unit's prompt once, so an instance without the chosen prompts stops the run before it starts."""
    for u in units:
        if settings.mode == "base":
            base_prompt(u.inst, settings.prompts)
        else:
            chat_prompt(u.inst, u.options, settings.prompts)


def _run_base(
    lm: LanguageModel,
    units: list[Unit],
    log: ItemLog,
    skipped: list[dict],
    progress: bool,
    batch: int,
    prompts: Prompts,
) -> None:
    by_inst: dict[str, list[Unit]] = {}
    for u in units:
        by_inst.setdefault(u.inst.id, []).append(u)
    todo = [us for us in by_inst.values() if any(u.key not in log for u in us)]
    bar = progress_bar(None, "base", total=len(todo), disable=not progress)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        reqs, spans = [], []
        for us in chunk:
            texts = list(dict.fromkeys(us[0].inst.options.values()))
            spans.append((len(reqs), texts))
            reqs += [(base_prompt(us[0].inst, prompts), t) for t in texts]
        try:
            res = lm.loglikelihood_detailed(reqs)
        except ServerError:  # the server cannot serve the run: stop, do not skip every instance
            raise
        except UserError:
            res = None  # an instance does not fit: score them one by one to find and skip it
        for us, (off, texts) in zip(chunk, spans, strict=True):
            inst = us[0].inst
            if res is not None:
                mine = res[off : off + len(texts)]
            else:
                try:
                    mine = lm.loglikelihood_detailed([(base_prompt(inst, prompts), t) for t in texts])
                except ServerError:
                    raise
                except UserError as e:
                    skipped.append({"id": inst.id, "task": inst.task, "reason": str(e)})
                    continue
            by_text = {
                t: {"logprob": r.logprob, "n_tokens": r.n_tokens, "n_chars": r.n_chars, "truncated": r.truncated}
                for t, r in zip(texts, mine, strict=True)
            }
            for u in us:
                if u.key not in log:
                    scores = {k: by_text[v] for k, v in u.options.items()}
                    prompt = base_prompt(inst, prompts)
                    log.write(_record(u, "base", prompt=prompt, scores=scores, pred=predict_base(scores)))
        bar.update(len(chunk))
    bar.close()


def _run_chat(lm: LanguageModel, units: list[Unit], log: ItemLog, settings: EvalSettings, progress: bool) -> None:
    todo = [u for u in units if u.key not in log]
    # a local model gets every item at once: it batches them longest first (and finds --batch-size auto on those)
    chunk = 4 * settings.concurrency if settings.backend == "openai" else max(len(todo), 1)
    gen = settings.generation()
    bar = progress_bar(None, "chat", total=len(todo), disable=not progress)
    for start in range(0, len(todo), chunk):
        batch = todo[start : start + chunk]
        system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        convs = [system + chat_prompt(u.inst, u.options, settings.prompts) for u in batch]

        def done(i: int, text: str, batch=batch, convs=convs) -> None:
            u = batch[i]
            ex = extract(answer_text(text), u.inst.language, u.options)  # reasoning is logged, not read
            pred = {n: ex.get(n) for n in ("strict", "lenient", "anchored", "original")}
            log.write(_record(u, "chat", prompt=convs[i], output=text, pred=pred))
            bar.update(1)

        lm.chat(convs, gen, on_result=done)
    bar.close()


def _record(u: Unit, mode: str, **fields) -> dict:
    return {
        "key": u.key,
        "id": u.inst.id,
        "task": u.inst.task,
        "domain": u.inst.domain,
        "language": u.inst.language,
        "rotation": u.rotation,
        "options": u.options,
        "gold": u.gold,
        "mode": mode,
        **fields,
    }


def evaluate(settings: EvalSettings, out_dir: Path, progress: bool = True, lm: LanguageModel | None = None) -> dict:
    """Run (or resume) an evaluation into `out_dir`; returns the metrics (also written to metrics.json)."""
    out_dir = Path(out_dir)
    if settings.system_prompt and settings.mode == "base":
        raise UserError("--system-prompt applies to chat mode; drop it or use --mode chat")
    if settings.circular and settings.gold_swap:
        raise UserError("--circular and --gold-swap are two ways to move the gold letter; pass only one")
    local_only = settings.revision or settings.trust_remote_code or settings.dtype or settings.precision
    local_only = local_only or settings.device_map or settings.peft or settings.peft_merge
    if settings.backend == "openai" and (local_only or settings.batch_size == "auto"):
        raise UserError(
            "--revision, --trust-remote-code, --dtype, --precision, --device-map, --peft, --peft-merge and "
            "--batch-size auto apply to local models; the server chooses them for its model (drop them, or drop "
            "--base-url)"
        )
    instances, skipped, data_hash = load_instances(settings)
    units = make_units(instances, settings.circular, settings.gold_swap)
    check_prompts(units, settings)
    config = settings.saved() | {"data_sha256": data_hash, "generation": settings.generation().to_dict()}
    if settings.backend == "local" and lm is None:  # a model folder or file changed since: refused on resume
        from distillkit.lm.local import model_identity, resolve_placement  # torch only for local models

        resolve_placement(settings.device, settings.dtype, settings.precision or "fp32", settings.device_map)
        trust = bool(settings.trust_remote_code)
        config["model_identity"] = model_identity(settings.model, settings.revision, settings.peft, trust)
    run = Run(out_dir, config, extendable=RESUMABLE, device=settings.device)
    log = ItemLog(out_dir / "items.jsonl")
    t0 = time.time()
    done_before = sum(u.key in log for u in units)
    try:
        lm = lm or load_backend(settings)
        if settings.mode == "base":
            batch = settings.batch_size
            if batch == "auto":  # found once, on the heaviest question of the run, then kept
                pairs = {(base_prompt(u.inst, settings.prompts), t): 0 for u in units for t in u.options.values()}
                batch = lm.fit_batch_size(list(pairs))
            _run_base(lm, units, log, skipped, progress, batch, settings.prompts)
        else:
            _run_chat(lm, units, log, settings, progress)
    finally:
        log.close()
        records = [log.records[u.key] for u in units if u.key in log.records]
        moved = settings.circular or settings.gold_swap
        metrics = summarize(records, settings.mode, settings.headline, moved, seed=settings.seed)
        metrics.update(
            model=settings.model,
            mode=settings.mode,
            prompts=settings.prompts,
            lang=settings.lang,
            circular=settings.circular,
            gold_swap=settings.gold_swap,
            release_date=settings.release_date,
            n_instances=len(instances),
            n_items=len(units),
            n_done=len(records),
            complete=len(records) == len(units),
            resumed_items=done_before,
            skipped=skipped,
            seconds=round(time.time() - t0, 2),
            backend=(lm.describe() if lm is not None and hasattr(lm, "describe") else {"backend": settings.backend}),
            decoding=settings.generation().to_dict() if settings.mode == "chat" else {"norm": settings.norm},
        )
        if lm is not None and hasattr(lm, "usage"):
            metrics["usage"] = dict(lm.usage)
        metrics = run.write_metrics(metrics)
        write_report_html(out_dir)
    return metrics
