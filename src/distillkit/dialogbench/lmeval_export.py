"""Export DialogBench tasks as lm-evaluation-harness task YAML.

`base` mode: multiple choice by option likelihood. `chat` mode: `generate_until` tasks whose answers are read
by distillkit's answer extractor (a filter defined in `distillkit.dialogbench.lmeval_chat`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from distillkit.dialogbench.render import base_context, chat_messages, sft_prompt
from distillkit.dialogbench.schema import Instance, load_sample, read_jsonl
from distillkit.dialogbench.tasks import all_tasks, check_lang
from distillkit.errors import UserError

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


_CHAT_TASK_YAML = """# DialogBench {abbr} ({name}), exported by distillkit. Chat mode: the model answers
# in free text and distillkit's extractor reads the option letter (filters: lenient = the headline, strict,
# anchored, original).
task: {task_name}
tag: dialogbench_chat
class: !function dialogbench_utils.DialogBenchChatTask
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data_file}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{label}}}}"
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_gen_toks}
filter_list:
{filters}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_CHAT_FILTER = """  - name: {extractor}
    filter:
      - function: !function dialogbench_utils.DialogBenchAnswer
        extractor: {extractor}
      - function: take_first"""

_CHAT_GROUP_YAML = """# DialogBench chat ({lang}): overall = unweighted mean of the task accuracies, as in the paper.
group: {group}
task:
{tasks}
aggregate_metric_list:
  - metric: exact_match
    aggregation: mean
    weight_by_size: false
    filter_list: lenient
  - metric: exact_match
    aggregation: mean
    weight_by_size: false
    filter_list: strict
metadata:
  version: 1.0
"""

_CHAT_UTILS = """# Loaded by lm-evaluation-harness through `!function` in the DialogBench chat task YAML.
# Needs distillkit installed in the environment that runs lm_eval.
from distillkit.dialogbench.lmeval_chat import DialogBenchAnswer, DialogBenchChatTask

__all__ = ["DialogBenchAnswer", "DialogBenchChatTask"]
"""

CHAT_FILTERS = ("lenient", "strict", "anchored", "original")


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


def lm_eval_chat_doc(inst: Instance) -> dict:
    """One chat-mode document: the chat messages, the flat prompt, the options and the gold letter."""
    return {
        "id": inst.id,
        "domain": inst.domain,
        "language": inst.language,
        "messages": chat_messages(inst),
        "prompt": sft_prompt(inst),
        "letters": "".join(inst.options),
        "choices": list(inst.options.values()),
        "label": inst.label,
    }


def export_lm_eval(
    out: Path,
    data: str | Path = "sample",
    lang: str = "en",
    mode: Literal["base", "chat"] = "base",
    max_gen_toks: int = 256,
) -> list[Path]:
    """Write one task YAML + data JSONL per task and a group YAML (the unweighted mean of the tasks).

    base: `dialogbench_<lang>_<task>.yaml`, group `dialogbench_<lang>`.
    chat: `dialogbench_chat_<lang>_<task>.yaml`, group `dialogbench_chat_<lang>`, and `dialogbench_utils.py`.
    Data paths in the YAML are absolute, so the harness finds them from any working directory.
    """
    check_lang(lang)
    if mode not in ("base", "chat"):
        raise UserError(f"--mode {mode!r}: use base (option likelihood) or chat (generation + answer extraction)")
    out, items = Path(out).resolve(), _load(data, lang)
    if mode == "base":
        return _write_tasks(out, items, lang, "", lm_eval_doc, _TASK_YAML, _GROUP_YAML)
    utils = out / "dialogbench_utils.py"
    out.mkdir(parents=True, exist_ok=True)
    utils.write_text(_CHAT_UTILS)
    filters = "\n".join(_CHAT_FILTER.format(extractor=e) for e in CHAT_FILTERS)
    tasks = _write_tasks(
        out,
        items,
        lang,
        "chat_",
        lm_eval_chat_doc,
        _CHAT_TASK_YAML,
        _CHAT_GROUP_YAML,
        max_gen_toks=max_gen_toks,
        filters=filters,
    )
    return [utils, *tasks]


def _write_tasks(
    out: Path,
    items: list[Instance],
    lang: str,
    prefix: str,
    to_doc: Callable[[Instance], dict],
    task_yaml: str,
    group_yaml: str,
    **fields: Any,
) -> list[Path]:
    """One data JSONL and one task YAML per task that has instances, then the group YAML that lists them."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names = []
    for abbr, task in all_tasks().items():
        docs = [to_doc(i) for i in items if i.task == abbr]
        if not docs:
            continue
        data_file = out / "data" / f"{prefix}{lang}_{abbr.lower()}.jsonl"
        data_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        name = f"dialogbench_{prefix}{lang}_{abbr.lower()}"
        yml = out / f"{name}.yaml"
        yml.write_text(
            task_yaml.format(abbr=abbr, name=task.name, task_name=name, data_file=json.dumps(str(data_file)), **fields)
        )
        written += [data_file, yml]
        names.append(name)
    group = out / f"dialogbench_{prefix}{lang}.yaml"
    listing = "\n".join(f"  - {n}" for n in names)
    group.write_text(group_yaml.format(lang=lang, group=f"dialogbench_{prefix}{lang}", tasks=listing))
    return [*written, group]


def _load(data: str | Path, lang: str) -> list[Instance]:
    items = load_sample() if str(data) == "sample" else read_jsonl(data)
    items = [i for i in items if i.language == lang]
    if not items:
        raise UserError(f"no {lang} instances in {data}; pass --lang of the data, or other --data")
    return items
