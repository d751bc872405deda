"""Export DialogBench tasks as lm-evaluation-harness task YAML (multiple choice by option likelihood)."""

from __future__ import annotations

import json
from pathlib import Path

from distillkit.dialogbench.render import base_context
from distillkit.dialogbench.schema import Instance, load_sample, read_jsonl
from distillkit.dialogbench.tasks import all_tasks, check_lang

_TASK_YAML = """# DialogBench {abbr} ({name}), exported by distillkit. Options are scored by likelihood of their text.
task: {task_name}
tag: dialogbench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_GROUP_YAML = """# DialogBench ({lang}): overall = unweighted mean of the task accuracies, as in the paper.
group: {group}
task:
{tasks}
aggregate_metric_list:
  - metric: acc
    aggregation: mean
    weight_by_size: false
  - metric: acc_norm
    aggregation: mean
    weight_by_size: false
metadata:
  version: 1.0
"""


def lm_eval_doc(inst: Instance) -> dict:
    """One harness document: the base-model context, the option texts, the gold index."""
    letters = list(inst.options)
    return {
        "id": inst.id,
        "domain": inst.domain,
        "context": base_context(inst),
        "choices": [inst.options[k] for k in letters],
        "gold": letters.index(inst.label),
    }


def export_lm_eval(out: Path, data: str | Path = "sample", lang: str = "en") -> list[Path]:
    """Write `dialogbench_<lang>_<task>.yaml` + data JSONL per task and a group `dialogbench_<lang>.yaml`.

    Data paths in the YAML are absolute, so the harness finds them from any working directory.
    """
    check_lang(lang)
    out = Path(out).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    items = load_sample() if str(data) == "sample" else read_jsonl(data)
    items = [i for i in items if i.language == lang]
    written: list[Path] = []
    names = []
    for abbr, task in all_tasks().items():
        docs = [lm_eval_doc(i) for i in items if i.task == abbr]
        if not docs:
            continue
        data_file = out / "data" / f"{lang}_{abbr.lower()}.jsonl"
        data_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        name = f"dialogbench_{lang}_{abbr.lower()}"
        yml = out / f"{name}.yaml"
        yml.write_text(
            _TASK_YAML.format(abbr=abbr, name=task.name, task_name=name, data_file=json.dumps(str(data_file)))
        )
        written += [data_file, yml]
        names.append(name)
    group = out / f"dialogbench_{lang}.yaml"
    listing = "\n".join(f"  - {n}" for n in names)
    group.write_text(_GROUP_YAML.format(lang=lang, group=f"dialogbench_{lang}", tasks=listing))
    written.append(group)
    return written
