"""What a generation run leaves behind: instances, rejects, official files, summary and datasheet."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from distillkit.dialogbench.generate.checks import CHECKS
from distillkit.dialogbench.generate.plan import Job
from distillkit.dialogbench.generate.prompts import domains
from distillkit.dialogbench.generate.screening import checked
from distillkit.dialogbench.generate.settings import GenSettings
from distillkit.dialogbench.itemlog import ItemLog
from distillkit.dialogbench.official import export_official
from distillkit.dialogbench.schema import Instance, write_jsonl
from distillkit.plots import count_panels
from distillkit.report import write_report_html
from distillkit.runs import provenance, write_json

REASONS = ("invalid_output", *CHECKS, "judge_wrong", "judge_unparsed")


def _reason_name(reason: str) -> str:
    return reason.split(":", 1)[0]


def finalize(
    s: GenSettings, out: Path, jobs: list[Job], gen_log: ItemLog, judge_log: ItemLog | None, budget, seconds: float
) -> dict:
    """Assemble accepted instances and rejects from the logs; write every output file (and report.html); return
    the summary."""
    survivors, failed = checked(s, jobs, gen_log)
    rejects: list[dict] = []
    by_id = {j.id: j for j in jobs}
    for j in jobs:
        rec = gen_log.records.get(j.key)
        if rec is not None and rec["status"] == "invalid":
            rejects.append(
                {
                    "id": j.id,
                    "task": j.task,
                    "domain": j.domain,
                    "stage": "generate",
                    "reason": rec["reason"],
                    "errors": rec["errors"],
                    "last_reply": rec["last_reply"],
                }
            )
    for inst_id, reason in failed.items():
        j = by_id[inst_id]
        rejects.append(
            {
                "id": inst_id,
                "task": j.task,
                "domain": j.domain,
                "stage": "check",
                "reason": reason,
                "instance": gen_log.records[j.key]["instance"],
            }
        )
    accepted: list[Instance] = []
    unjudged = 0
    for inst in survivors:
        if judge_log is None:
            accepted.append(inst)
            continue
        rec = judge_log.records.get(inst.id)
        if rec is None:
            unjudged += 1
        elif rec["kept"]:
            inst.provenance["filter"] = {"judge": s.judge_llm or s.llm, "judge_answer": rec["pred"]}
            accepted.append(inst)
        else:
            why = (
                "judge_unparsed: no letter in the judge's answer"
                if rec["pred"] is None
                else f"judge_wrong: judge chose {rec['pred']}, gold {rec['gold']}"
            )
            rejects.append(
                {
                    "id": inst.id,
                    "task": inst.task,
                    "domain": inst.domain,
                    "stage": "judge",
                    "reason": why,
                    "judge_output": rec["output"][:500],
                    "instance": inst.model_dump(),
                }
            )
    write_jsonl(out / "instances.jsonl", accepted)
    with (out / "rejects.jsonl").open("w", encoding="utf-8") as f:
        for r in rejects:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    export_official(accepted, out / "official")
    done = sum(j.key in gen_log for j in jobs)
    usage = budget.used()
    summary = {
        "planned": len(jobs),
        "generated": done,
        "valid": done - sum(r["stage"] == "generate" for r in rejects),
        "repaired": sum(r["status"] == "valid" and bool(r["errors"]) for r in gen_log.records.values()),
        "accepted": len(accepted),
        "rejected": len(rejects),
        "rejected_by_reason": dict(Counter(_reason_name(r["reason"]) for r in rejects)),
        "unjudged": unjudged,
        "complete": done == len(jobs) and unjudged == 0,
        "budget_reached": budget.reached,
        "usage": usage,
        "seconds": round(seconds, 2),
        "rounding_note": s.rounding_note,
        "mitigation": s.mitigation(),
        "provenance": provenance(None, seconds),
    }
    write_json(out / "summary.json", summary)
    write_datasheet(out, s, accepted, rejects, summary)
    write_report_html(out)
    return summary


def datasheet(accepted: list[Instance], rejects: list[dict]) -> dict:
    """Counts per task, domain, gold letter, speaker style, and rejection reason."""
    style = Counter(st for i in accepted for st in (i.provenance.get("styles") or ["(not set)"]))
    return {
        "task": dict(Counter(i.task for i in accepted)),
        "domain": dict(Counter(i.domain for i in accepted)),
        "answer_position": dict(sorted(Counter(i.label for i in accepted).items())),
        "style": dict(style),
        "rejection_reason": dict(Counter(_reason_name(r["reason"]) for r in rejects)),
    }


def _table(title: str, counts: dict) -> str:
    rows = "".join(f"| {k} | {v} |\n" for k, v in counts.items()) or "| (none) | 0 |\n"
    return f"\n## {title}\n\n| value | count |\n|---|---|\n{rows}"


def write_datasheet(out: Path, s: GenSettings, accepted: list[Instance], rejects: list[dict], summary: dict) -> None:
    """datasheet.json, datasheet.md and datasheet.png (four bar charts)."""
    sheet = datasheet(accepted, rejects)
    write_json(out / "datasheet.json", {"summary": summary, "counts": sheet, "settings": s.saved()})
    head = (
        f"# Datasheet: generated DialogBench ({s.lang})\n\n"
        f"Generator `{s.llm}`; judge `{(s.judge_llm or s.llm) if s.judge else 'none'}`; seed {s.seed}; "
        f"{s.per_task} planned per task over {len(s.domains)} domains"
        f"{f' ({s.rounding_note})' if s.rounding_note else ''}. Mitigations: "
        + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in s.mitigation().items())
        + f".\n\nAccepted {summary['accepted']} of {summary['planned']} planned; rejected {summary['rejected']}; "
        f"tokens {summary['usage']['prompt_tokens']} prompt + {summary['usage']['completion_tokens']} completion "
        f"in {summary['usage']['requests']} requests.\n\n![counts](datasheet.png)\n"
    )
    titles = {
        "task": "Per task",
        "domain": "Per domain",
        "answer_position": "Per answer position",
        "style": "Per speaker style",
        "rejection_reason": "Rejection reasons",
    }
    body = "".join(_table(titles[k], v) for k, v in sheet.items())
    (out / "datasheet.md").write_text(head + body, encoding="utf-8")
    _plot(out / "datasheet.png", sheet)


def _latin(label: str) -> str:
    """Chinese domain names as their English counterparts (the default plot font has no CJK glyphs)."""
    zh = domains("zh")
    return domains("en")[zh.index(label)] if label in zh else label


def _plot(path: Path, sheet: dict) -> None:
    panels = {
        key.replace("_", " "): {_latin(k): v for k, v in sheet[key].items()}
        for key in ("task", "answer_position", "domain", "rejection_reason")
    }
    count_panels(panels, path)
