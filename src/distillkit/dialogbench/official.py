"""Import and export of the official DialogBench release format (one JSON Lines file per task)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from distillkit.dialogbench.render import OFFICIAL_SOURCE, OFFICIAL_VIEWS, base_context, chat_messages, sft_prompt
from distillkit.dialogbench.schema import Instance, instance_from_dict
from distillkit.dialogbench.tasks import Task, all_tasks, check_lang
from distillkit.errors import UserError

_CONTENT_KEYS = ("answer", "text", "content", "person", "person1", "person2")
_SLOT_RE = re.compile(
    r"【(Question|Hypothesis|Answer|Knowledge|Persona|提问|假设|答案|知识|人物性格)】(.*?)"
    r"【(?:Candidate options|候选选项)】",
    re.S,
)


def find_task_dir(root: Path, lang: str) -> Path:
    """Accept a clone of the repository, its `data/` folder, or the `data_en`/`data_zh` folder itself."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root} does not exist; give the path of a kwai/DialogBench clone or its data folder")
    for cand in (root / "data" / f"data_{lang}", root / f"data_{lang}", root):
        if cand.is_dir() and any((cand / t.official[lang]).exists() for t in all_tasks().values()):
            return cand
    raise UserError(
        f"no official {lang} task files (e.g. {all_tasks()['SF'].official[lang]}) under {root}; "
        f"point to a kwai/DialogBench clone or its data/data_{lang} folder"
    )


def normalise_choices(raw: Any, label: Any) -> tuple[dict[str, str], str]:
    """Official `choices`/`label` to letters A-D: numeric keys 1..4 map to A..D, object values give their text."""
    items: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        for opt in raw:
            if not isinstance(opt, dict):
                raise ValueError("choices list must hold objects")
            items += list(opt.items())
    else:
        raise ValueError("choices must be an object or a list")
    numeric = any(str(k).isnumeric() for k, _ in items)
    out: dict[str, str] = {}
    for k, v in items:
        key = chr(int(k) + 64) if str(k).isnumeric() else str(k).strip().upper()
        if isinstance(v, dict):
            v = next((v[c] for c in _CONTENT_KEYS if v.get(c) is not None), None)
        if v is None or not str(v).strip() or str(v).strip().lower() == "none":
            raise ValueError(f"option {key} is empty or 'None'")
        out[key] = str(v).strip()
    if len(out) > 4:
        raise ValueError(f"{len(out)} options; at most 4 are allowed")
    label = str(label).strip()
    if numeric and label.isnumeric():
        label = chr(int(label) + 64)
    return dict(sorted(out.items())), label.upper()


def _dialogue(obj: dict) -> tuple[list[dict], str, list[str]]:
    """Turns from `history` ([user, assistant] pairs) or `messages`; returns turns, final query, warnings."""
    warnings: list[str] = []
    turns: list[dict] = []
    if isinstance(obj.get("history"), list):
        for pair in obj["history"]:
            for role, text in zip(("User", "Assistant"), pair, strict=False):
                if text and str(text).strip():
                    turns.append({"speaker": role, "text": str(text).strip()})
        query = str(obj.get("query") or "")
    elif isinstance(obj.get("messages"), list) and obj["messages"]:
        msgs = obj["messages"]
        roles = [m.get("role") for m in msgs]
        if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
            warnings.append("roles do not alternate; consecutive turns were merged")
        for m in msgs[:-1]:
            sp = "User" if m.get("role") == "user" else "Assistant"
            if m.get("role") == "system":
                continue
            if turns and turns[-1]["speaker"] == sp:
                turns[-1]["text"] += "\n" + str(m.get("content", "")).strip()
            else:
                turns.append({"speaker": sp, "text": str(m.get("content", "")).strip()})
        query = str(msgs[-1].get("content", ""))
    else:
        raise ValueError("neither 'history' nor 'messages' holds the dialogue")
    head, sep, tail = query.rpartition("\n\n")
    if sep and head.strip() and "【" in tail and "【" not in head:  # a last user utterance joined to the question
        if turns and turns[-1]["speaker"] == "User":
            turns[-1]["text"] += "\n" + head.strip()
        else:
            turns.append({"speaker": "User", "text": head.strip()})
        query = tail
    return turns, query, warnings


def official_to_instance(obj: dict, task: Task, lang: str, where: str, file_hash: str) -> tuple[Instance, list[str]]:
    """Convert one official record; raises UserError (naming `where`) when it cannot be used."""
    try:
        options, label = normalise_choices(obj.get("choices"), obj.get("label"))
        turns, query, warnings = _dialogue(obj)
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: {e}") from None
    m = _SLOT_RE.search(query)
    slot = m.group(2).strip() if m else None
    record = {
        "id": str(obj.get("id", where)),
        "task": task.abbr,
        "language": lang,
        "domain": str(obj.get("domain") or "unknown"),
        "dialogue": turns,
        "slot": slot if task.slot else None,
        "options": options,
        "label": label,
        "provenance": {
            "source": OFFICIAL_SOURCE,
            "file": task.official[lang],
            "sha256": file_hash,
            "where": where,
            "official": {view: obj.get(view) for view in OFFICIAL_VIEWS},  # verbatim, for --prompts official
        },
    }
    return instance_from_dict(record, where), warnings


def import_official(root: Path, lang: str = "en", tasks: list[Task] | None = None) -> tuple[list[Instance], dict]:
    """Read the official files of `lang`; unusable lines are skipped and listed in the returned report."""
    check_lang(lang)
    folder = find_task_dir(root, lang)
    instances: list[Instance] = []
    report: dict[str, Any] = {"folder": str(folder), "lang": lang, "files": {}, "skipped": [], "warnings": []}
    for task in tasks or list(all_tasks().values()):
        path = folder / task.official[lang]
        if not path.exists():
            report["warnings"].append(f"{task.abbr}: {path.name} missing")
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        lines = [ln for ln in data.decode("utf-8").splitlines() if ln.strip()]
        kept, ids = 0, set()
        for n, line in enumerate(lines, 1):
            where = f"{path.name}:{n}"
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{where}: malformed JSON ({e.msg})") from None
                inst, warns = official_to_instance(obj, task, lang, where, digest)
                if inst.id in ids:
                    inst = inst.model_copy(update={"id": f"{inst.id}-{n}"})
                ids.add(inst.id)
                instances.append(inst)
                kept += 1
                report["warnings"] += [f"{where}: {w}" for w in warns]
            except UserError as e:
                report["skipped"].append(str(e))
        expected = int(task.paper["num"])
        report["files"][task.abbr] = {
            "file": path.name,
            "sha256": digest,
            "lines": len(lines),
            "imported": kept,
            "paper_num": expected,
        }
        if len(lines) != expected:
            report["warnings"].append(f"{task.abbr}: {len(lines)} lines, the paper reports {expected}")
    if not instances:
        raise UserError(f"no usable instances under {folder}; see the skipped lines: {report['skipped'][:2]}")
    return instances, report


def instance_to_official(inst: Instance) -> dict:
    """One official-format record with every pre-rendered view: those an import kept, verbatim; the others
    rendered by distillkit."""
    msgs = chat_messages(inst)
    hist = msgs[:-1]
    pairs = [[hist[i]["content"], hist[i + 1]["content"] if i + 1 < len(hist) else ""] for i in range(0, len(hist), 2)]
    rendered = {
        "prompt_pretrain": base_context(inst),
        "prompt_SFT": sft_prompt(inst),
        "query": msgs[-1]["content"],
        "history": pairs,
        "messages": msgs,
    }
    kept = inst.provenance.get("official") or {}
    views = {view: kept[view] if kept.get(view) is not None else rendered[view] for view in OFFICIAL_VIEWS}
    return {"id": inst.id, "domain": inst.domain, "choices": dict(inst.options), "label": inst.label, **views}


def export_official(instances: list[Instance], out_dir: Path) -> list[Path]:
    """Write `data_<lang>/<official file>` per task present, as JSON Lines."""
    out_dir = Path(out_dir)
    groups: dict[tuple[str, str], list[Instance]] = {}
    for inst in instances:
        groups.setdefault((inst.language, inst.task), []).append(inst)
    written = []
    for (lang, abbr), items in sorted(groups.items()):
        path = out_dir / f"data_{lang}" / all_tasks()[abbr].official[lang]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for inst in items:
                f.write(json.dumps(instance_to_official(inst), ensure_ascii=False) + "\n")
        written.append(path)
    return written
