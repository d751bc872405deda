"""Generate, validate/repair, check and judge instances; every finished job is logged so a kill loses nothing.

`generated.jsonl` holds one record per job (a valid instance or the reason it failed) and `judged.jsonl`
one per judged instance; both are append-only and fsync'ed (ItemLog), and the response cache makes a
repeated request free, so running the same command again continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from distillkit.dialogbench.extract import extract
from distillkit.dialogbench.generate.outputs import finalize
from distillkit.dialogbench.generate.parse import InvalidReply, parse_reply
from distillkit.dialogbench.generate.plan import Job, make_plan
from distillkit.dialogbench.generate.prompts import (
    build_messages,
    prompt_data,
    repair_messages,
    response_format,
    styles,
)
from distillkit.dialogbench.generate.screening import checked
from distillkit.dialogbench.generate.settings import GenSettings
from distillkit.dialogbench.itemlog import ItemLog
from distillkit.dialogbench.render import chat_messages
from distillkit.dialogbench.schema import Instance
from distillkit.errors import UserError
from distillkit.lm.config import GenerationConfig
from distillkit.lm.reasoning import answer_text
from distillkit.lm.secrets import mask_url
from distillkit.progress import progress
from distillkit.runs import Run
from distillkit.seeding import derive_seed, seed32


class Budget:
    """A cap on requests and/or tokens, summed over the clients given."""

    def __init__(self, clients: list, max_requests: int | None, max_tokens: int | None):
        self.clients = [c for i, c in enumerate(clients) if c is not None and all(c is not d for d in clients[:i])]
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.reached = False

    def used(self) -> dict[str, int]:
        keys = ("requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens")
        return {k: sum(c.usage.get(k, 0) for c in self.clients) for k in keys}

    def allowance(self, wanted: int) -> int:
        """How many of `wanted` requests may still be sent (0 marks the budget as reached)."""
        u = self.used()
        n = wanted
        if self.max_requests is not None:
            n = min(n, self.max_requests - u["requests"])
        if self.max_tokens is not None and u["prompt_tokens"] + u["completion_tokens"] >= self.max_tokens:
            n = 0
        if n < wanted:
            self.reached = True
        return max(n, 0)


@dataclass
class _State:
    job: Job
    messages: list[dict[str, str]]
    errors: list[str] = field(default_factory=list)


def provenance(s: GenSettings, job: Job, attempts: int) -> dict:
    """What every generated instance records about how it was made."""
    return {
        "source": "distillkit-generate",
        "generator": s.llm,
        "base_url": mask_url(s.base_url),
        "prompt_version": prompt_data()["version"],
        "job": job.key,
        "seed": job.seed,
        "attempts": attempts,
        "mitigation": s.mitigation(),
        "styles": list(job.styles) if job.styles else None,
        "gold_position": job.gold or "llm",
        "json_schema": s.json_schema,
        "sampling": {
            "temperature": s.temperature,
            "presence_penalty": s.presence_penalty,
            "max_new_tokens": s.max_new_tokens,
        },
    }


def plan_for(s: GenSettings) -> list[Job]:
    return make_plan(
        s.tasks,
        s.per_task,
        s.lang,
        s.n_options,
        s.seed,
        s.domains,
        styles(s.lang),
        s.domain_balance,
        s.style_mix,
        s.position_balance,
    )


def _generate(lm, s: GenSettings, jobs: list[Job], log: ItemLog, budget: Budget, show: bool) -> None:
    todo = [j for j in jobs if j.key not in log]
    gen = GenerationConfig(max_new_tokens=s.max_new_tokens, do_sample=True, temperature=s.temperature, seed=s.seed)
    bar = progress(None, desc="generate", total=len(jobs), initial=len(jobs) - len(todo), disable=not show)
    streak = {"n": 0, "last": ""}
    chunk = max(8, 4 * s.concurrency)
    try:
        for start in range(0, len(todo), chunk):
            active = [
                _State(j, build_messages(j, s.n_options, s.prompt_min_turns)) for j in todo[start : start + chunk]
            ]
            while active:
                n = budget.allowance(len(active))
                if n == 0:
                    return
                batch, active = active[:n], active[n:]
                retry: list[_State] = []

                def done(i: int, text: str, batch=batch, retry=retry) -> None:
                    st = batch[i]
                    try:
                        inst = parse_reply(
                            answer_text(text), st.job, s.n_options, provenance(s, st.job, len(st.errors) + 1)
                        )
                    except InvalidReply as e:
                        st.errors.append(str(e))
                        if len(st.errors) < s.max_attempts:
                            st.messages = repair_messages(st.messages, answer_text(text), str(e), s.lang)
                            retry.append(st)
                            return
                        log.write(
                            {
                                "key": st.job.key,
                                "status": "invalid",
                                "job": st.job.to_dict(),
                                "reason": f"invalid_output: {st.errors[-1]}",
                                "errors": st.errors,
                                "last_reply": text[:2000],
                            }
                        )
                        streak["n"] += 1
                        streak["last"] = st.errors[-1]
                        bar.update(1)
                        return
                    log.write(
                        {
                            "key": st.job.key,
                            "status": "valid",
                            "job": st.job.to_dict(),
                            "instance": inst.model_dump(),
                            "errors": st.errors,
                        }
                    )
                    streak["n"] = 0
                    bar.update(1)

                extras = [_extra(s, st) for st in batch]
                try:
                    lm.chat([st.messages for st in batch], gen, on_result=done, extra=extras)
                except UserError as e:
                    if s.json_schema and "rejected the request (HTTP 400" in str(e):
                        raise UserError(
                            f"{e}; if the server does not support response_format (JSON schema), add --no-json-schema"
                        ) from None
                    raise
                if streak["n"] >= min(s.max_invalid_streak, len(jobs)):
                    raise UserError(
                        f"model {s.llm!r} returned no usable instance for {streak['n']} jobs in a row, each tried "
                        f"{s.max_attempts} times (last problem: {streak['last']}); use a stronger model"
                        + ("" if s.json_schema else " or drop --no-json-schema")
                    )
                active = retry + active
    finally:
        bar.close()


def _extra(s: GenSettings, st: _State) -> dict:
    x: dict = {
        "seed": seed32(derive_seed(st.job.seed, "generation_retry", len(st.errors))),
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": 0.0,
    }
    if s.json_schema:
        x["response_format"] = response_format(st.job.task, s.n_options, st.job.gold is None)
    return x


def _judge(lm, s: GenSettings, items: list[Instance], log: ItemLog, budget: Budget, show: bool) -> None:
    todo = [i for i in items if i.id not in log]
    gen = GenerationConfig(max_new_tokens=64, do_sample=False, seed=s.seed)
    bar = progress(None, desc="judge", total=len(items), initial=len(items) - len(todo), disable=not show)
    chunk = max(8, 4 * s.concurrency)
    try:
        for start in range(0, len(todo), chunk):
            batch = todo[start : start + chunk]
            batch = batch[: budget.allowance(len(batch))]
            if not batch:
                return

            def done(i: int, text: str, batch=batch) -> None:
                inst = batch[i]
                pred = extract(answer_text(text), inst.language, inst.options).lenient
                log.write(
                    {"key": inst.id, "output": text, "pred": pred, "gold": inst.label, "kept": pred == inst.label}
                )
                bar.update(1)

            lm.chat([chat_messages(inst) for inst in batch], gen, on_result=done)
    finally:
        bar.close()


def run_generation(s: GenSettings, out_dir: Path, lm, judge_lm=None, show: bool = True) -> dict:
    """Generate (or resume) into `out_dir`; write instances, rejects, official files and datasheet."""
    out_dir = Path(out_dir)
    run = Run(out_dir, s.fixed())  # refuses other settings, and a second process on the same folder
    jobs = plan_for(s)
    judge_lm = (judge_lm or lm) if s.judge else None
    budget = Budget([lm, judge_lm], s.max_requests, s.max_tokens)
    gen_log, judge_log = ItemLog(out_dir / "generated.jsonl"), ItemLog(out_dir / "judged.jsonl")
    t0 = time.time()
    try:
        _generate(lm, s, jobs, gen_log, budget, show)
        if judge_lm is not None:
            survivors, _ = checked(s, jobs, gen_log)
            _judge(judge_lm, s, survivors, judge_log, budget, show)
    finally:
        gen_log.close()
        judge_log.close()
        summary = finalize(
            s, out_dir, jobs, gen_log, judge_log if judge_lm is not None else None, budget, time.time() - t0
        )
        run.close()
    return summary
