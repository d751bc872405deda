"""Which generated instances survive the no-LLM checks: read from the generation log, in plan order."""

from __future__ import annotations

from distillkit.dialogbench.generate.checks import check_instance, duplicate_dialogues
from distillkit.dialogbench.generate.plan import Job
from distillkit.dialogbench.generate.settings import GenSettings
from distillkit.dialogbench.itemlog import ItemLog
from distillkit.dialogbench.schema import Instance


def checked(s: GenSettings, jobs: list[Job], log: ItemLog) -> tuple[list[Instance], dict[str, str]]:
    """Valid instances that pass every no-LLM check (in plan order), and id -> reason for the others."""
    valid = [
        Instance.model_validate(log.records[j.key]["instance"])
        for j in jobs
        if j.key in log and log.records[j.key]["status"] == "valid"
    ]
    failed: dict[str, str] = {}
    passing = []
    for inst in valid:
        reason = check_instance(inst, s.checks())
        if reason:
            failed[inst.id] = reason
        else:
            passing.append(inst)
    failed.update(duplicate_dialogues(passing, s.checks().dialogue_similarity))
    return [i for i in passing if i.id not in failed], failed
