"""Resolve user input (tasks, language, counts, models) into settings and clients, then run the pipeline."""

from __future__ import annotations

from pathlib import Path

from distillkit.dialogbench.generate.plan import balanced_count
from distillkit.dialogbench.generate.prompts import domains
from distillkit.dialogbench.generate.settings import GenSettings
from distillkit.dialogbench.tasks import check_lang, parse_tasks
from distillkit.errors import UserError


def resolve(
    llm: str,
    tasks: str | list[str] | None,
    per_task: int,
    lang: str,
    rounding: str | None = None,
    domain_balance: bool = True,
    **kw,
) -> GenSettings:
    """Settings with the task list, the language and the domain-balanced per-task count checked."""
    check_lang(lang)
    if rounding not in (None, "up", "down"):
        raise UserError(f"--round must be up or down, got {rounding!r}")
    task_list = [t.abbr for t in parse_tasks(tasks)]
    doms = domains(lang) if domain_balance else []
    n, note = balanced_count(per_task, len(doms), rounding) if domain_balance else (per_task, None)
    return GenSettings(
        llm=llm,
        tasks=task_list,
        lang=lang,
        per_task=n,
        requested_per_task=per_task,
        rounding_note=note,
        domains=doms,
        domain_balance=domain_balance,
        **kw,
    )


def clients(s: GenSettings, cache_dir: Path | None = None, **client_kw):
    """Generator and judge clients (distillkit.lm.OpenAICompatLM); the judge is None when filtering is off."""
    from distillkit.lm.openai_compat import OpenAICompatLM

    client_kw = {"timeout": s.timeout, "max_retries": s.max_retries} | client_kw
    lm = OpenAICompatLM(model=s.llm, base_url=s.base_url, concurrency=s.concurrency, cache_dir=cache_dir, **client_kw)
    judge = None
    if s.judge and (s.judge_llm or s.judge_base_url):
        judge = OpenAICompatLM(
            model=s.judge_llm or s.llm,
            base_url=s.judge_base_url or s.base_url,
            concurrency=s.concurrency,
            cache_dir=cache_dir,
            **client_kw,
        )
    return lm, judge


def generate(s: GenSettings, out_dir: Path, show: bool = True, cache_dir: Path | None = None, **client_kw) -> dict:
    """Run (or resume) a generation into `out_dir` and return its summary."""
    from distillkit.dialogbench.generate.pipeline import run_generation

    lm, judge = clients(s, cache_dir, **client_kw)
    return run_generation(s, out_dir, lm, judge, show=show)
