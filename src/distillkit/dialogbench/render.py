"""Prompt rendering: the flat base-model context and the chat-model messages (spec section 2.3)."""

from __future__ import annotations

from distillkit.dialogbench.schema import Instance
from distillkit.dialogbench.tasks import all_tasks, headers


def _h(name: str) -> str:
    return f"【{name}】"


def options_line(options: dict[str, str]) -> str:
    """'A. text B. text C. text' on one line, as in the official prompts."""
    return " ".join(f"{k}. {v}" for k, v in options.items())


def flatten_dialogue(inst: Instance) -> str:
    """One 'Speaker: text' line per turn."""
    return "\n".join(f"{t.speaker}: {t.text}" for t in inst.dialogue)


def base_context(inst: Instance) -> str:
    """Base-model context: instruction, dialogue, optional slot, and the task's answer header.

    An imported official instance keeps its own `prompt_pretrain` (the data hold the rendered prompt).
    """
    official = inst.provenance.get("official", {})
    if official.get("prompt_pretrain"):
        return official["prompt_pretrain"]
    task = all_tasks()[inst.task]
    lang = inst.language
    parts = [task.base_instruction[lang], _h(headers(lang)["dialogue"]), flatten_dialogue(inst)]
    if task.slot is not None and task.base_slot_header:
        parts += [_h(task.base_slot_header[lang]), inst.slot or ""]
    parts.append(_h(task.base_header[lang]))
    return "".join(parts)


def final_user_turn(inst: Instance, options: dict[str, str] | None = None) -> str:
    """Instruction, optional slot under its bracket header, then the candidate options on one line."""
    task = all_tasks()[inst.task]
    lang = inst.language
    text = task.chat_instruction[lang]
    if task.slot is not None:
        text += _h(task.chat_slot_header(lang)) + (inst.slot or "")
    return text + _h(headers(lang)["options"]) + options_line(options or inst.options)


def dialogue_messages(inst: Instance) -> list[dict[str, str]]:
    """The dialogue as alternating user/assistant messages (first speaker = user).

    Consecutive turns of one speaker are merged, so roles always alternate.
    """
    speakers: list[str] = []
    msgs: list[dict[str, str]] = []
    for turn in inst.dialogue:
        if turn.speaker not in speakers:
            speakers.append(turn.speaker)
        role = "user" if speakers.index(turn.speaker) % 2 == 0 else "assistant"
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] += "\n" + turn.text
        else:
            msgs.append({"role": role, "content": turn.text})
    return msgs


def chat_messages(inst: Instance, options: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Chat history plus the final user turn; a trailing user utterance is joined to that turn."""
    msgs = dialogue_messages(inst)
    question = final_user_turn(inst, options)
    if msgs and msgs[-1]["role"] == "user":
        msgs[-1] = {"role": "user", "content": msgs[-1]["content"] + "\n\n" + question}
    else:
        msgs.append({"role": "user", "content": question})
    return msgs


def sft_prompt(inst: Instance, options: dict[str, str] | None = None) -> str:
    """One flat prompt for chat models without a usable template (the official `prompt_SFT` view)."""
    return flatten_dialogue(inst) + "\n" + final_user_turn(inst, options)
