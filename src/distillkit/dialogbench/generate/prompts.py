"""Generation prompts (templates in `prompts.json`) and the JSON schema of the expected answer."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from distillkit.dialogbench.generate.plan import Job
from distillkit.dialogbench.tasks import all_tasks, check_lang

MIN_TURNS = 10


@lru_cache(maxsize=1)
def prompt_data() -> dict:
    """The templates, domains and speaker styles (one JSON file, EN and ZH)."""
    return json.loads(resources.files("distillkit.dialogbench.generate").joinpath("prompts.json").read_text("utf-8"))


def domains(lang: str) -> list[str]:
    """The paper's 20 domains (10 daily life, 10 professional) in `lang`."""
    return list(prompt_data()["domains"][check_lang(lang)])


def styles(lang: str) -> list[str]:
    """Speaker styles/personalities, unfriendly ones included."""
    return list(prompt_data()["styles"][check_lang(lang)])


def speakers(lang: str) -> tuple[str, str]:
    a, b = prompt_data()["template"][lang]["speakers"]
    return a, b


def response_schema(task: str, n_options: int, llm_places_gold: bool = False) -> dict[str, Any]:
    """JSON schema of one answer; the gold answer is `correct`, its position is chosen by the pipeline.

    With `llm_places_gold` (position mitigation off) the model returns `options` and `answer_index` instead.
    """
    turn = {
        "type": "object",
        "properties": {"speaker": {"type": "string"}, "text": {"type": "string"}},
        "required": ["speaker", "text"],
        "additionalProperties": False,
    }
    props: dict[str, Any] = {"dialogue": {"type": "array", "items": turn, "minItems": 2}}
    if all_tasks()[task].slot is not None:
        props["slot"] = {"type": "string"}
    if llm_places_gold:
        props["options"] = {"type": "array", "items": {"type": "string"}, "minItems": n_options, "maxItems": n_options}
        props["answer_index"] = {"type": "integer", "minimum": 0, "maximum": n_options - 1}
    else:
        props["correct"] = {"type": "string"}
        props["distractors"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": n_options - 1,
            "maxItems": n_options - 1,
        }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def response_format(task: str, n_options: int, llm_places_gold: bool = False) -> dict[str, Any]:
    """The `response_format` request field (OpenAI structured outputs)."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": f"dialogbench_{task.lower()}",
            "strict": True,
            "schema": response_schema(task, n_options, llm_places_gold),
        },
    }


def build_messages(job: Job, n_options: int, min_turns: int = MIN_TURNS) -> list[dict[str, str]]:
    """System + user message asking for one instance: goal, input data, context, prompt style."""
    lang = job.lang
    tpl = prompt_data()["template"][lang]
    spec = prompt_data()["tasks"][job.task][lang]
    a, b = speakers(lang)
    style = (
        tpl["style"].format(speaker_a=a, speaker_b=b, style_a=job.styles[0], style_b=job.styles[1])
        if job.styles
        else ""
    )
    slot_instruction = tpl["slot"].format(slot_desc=spec["slot"]) if spec["slot"] else ""
    keys = list(response_schema(job.task, n_options, job.gold is None)["properties"])
    domain = job.domain if job.domain else ("任意话题" if lang == "zh" else "any everyday or professional topic")
    user = tpl["user"].format(
        goal=spec["goal"],
        speaker_a=a,
        speaker_b=b,
        domain=domain,
        min_turns=min_turns,
        min_utterances=2 * min_turns,
        style=style,
        slot_instruction=slot_instruction,
        n_options=n_options,
        n_distractors=n_options - 1,
        options_desc=spec["options"],
        leak=tpl["leak"] if spec["slot"] else "",
        ending=spec.get("ending", "").format(speaker_a=a, speaker_b=b),
        keys=", ".join(f"`{k}`" for k in keys),
    )
    return [{"role": "system", "content": tpl["system"]}, {"role": "user", "content": user}]


def repair_messages(messages: list[dict[str, str]], bad_reply: str, error: str, lang: str) -> list[dict[str, str]]:
    """The conversation extended by the invalid reply and a request to fix it."""
    note = prompt_data()["template"][lang]["repair"].format(error=error)
    return [*messages, {"role": "assistant", "content": bad_reply[:4000]}, {"role": "user", "content": note}]
