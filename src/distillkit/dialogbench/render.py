"""Prompt rendering: the flat base-model context and the chat-model messages (spec section 2.3).

Two sources of prompts (`--prompts`): `distillkit` renders every prompt from the structured fields with the
templates in tasks.json, whatever the data came from; `official` asks an instance imported from the release with
the release's own text, kept verbatim at import (`provenance.official`).
"""

from __future__ import annotations

from typing import Any, Literal

from distillkit.dialogbench.schema import Instance
from distillkit.dialogbench.tasks import all_tasks, headers
from distillkit.errors import UserError

Prompts = Literal["distillkit", "official"]
OFFICIAL_SOURCE = "kwai/DialogBench"  # provenance.source of an imported instance
# the release's pre-rendered views an import keeps verbatim (imports before chat prompts were kept lack the last 3)
OFFICIAL_VIEWS = ("prompt_pretrain", "prompt_SFT", "query", "history", "messages")
REIMPORT = "import the release again (`dialogbench import` or `dialogbench fetch`) to keep them"


def _h(name: str) -> str:
    return f"【{name}】"


def options_line(options: dict[str, str]) -> str:
    """'A. text B. text C. text' on one line, as in the official prompts."""
    return " ".join(f"{k}. {v}" for k, v in options.items())


def flatten_dialogue(inst: Instance) -> str:
    """One 'Speaker: text' line per turn."""
    return "\n".join(f"{t.speaker}: {t.text}" for t in inst.dialogue)


def base_context(inst: Instance) -> str:
    """Base-model context: instruction, dialogue, optional slot, and the task's answer header."""
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


def official_views(inst: Instance) -> dict[str, Any]:
    """The release's own prompts kept at import; one-line UserError for an instance that is not from it."""
    source = inst.provenance.get("source")
    if source != OFFICIAL_SOURCE:
        raise UserError(
            f"instance {inst.id!r} is not from the official release (source: {source or 'none'}), so it has no "
            "official prompts; use --prompts distillkit, or evaluate data imported with `dialogbench import`/`fetch`"
        )
    return inst.provenance.get("official") or {}


def official_base_context(inst: Instance) -> str:
    """The release's `prompt_pretrain`, verbatim."""
    text = official_views(inst).get("prompt_pretrain")
    if not isinstance(text, str) or not text:
        raise UserError(
            f"instance {inst.id!r} has no official prompt_pretrain; {REIMPORT}, or use --prompts distillkit"
        )
    return text


def _pairs_to_messages(history: list) -> list[dict[str, str]]:
    """[user, assistant] pairs as alternating messages (what the native chat(query, history) interfaces build)."""
    msgs = []
    for pair in history:
        for role, text in zip(("user", "assistant"), pair, strict=False):
            msgs.append({"role": role, "content": str(text)})
    return msgs


def _move_options(inst: Instance, content: str, options: dict[str, str]) -> str:
    """The release's question with its options line replaced by `options` (as the official Qwen and Baichuan
    evaluators move the gold answer)."""
    line = options_line(inst.options)
    if line not in content:
        raise UserError(
            f"instance {inst.id!r}: the release's question does not hold its options as {line[:40]!r}..., so "
            "they cannot be moved; drop --circular/--gold-swap or use --prompts distillkit"
        )
    return content.replace(line, options_line(options))


def official_chat_messages(inst: Instance, options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The release's own chat prompt, verbatim: its `messages`, else its `query` after its `history` pairs.

    Options in another order than stored (circular, gold swap) replace the options line of the last message.
    """
    views = official_views(inst)
    if "messages" not in views:
        raise UserError(
            f"instance {inst.id!r} was imported before the release's chat prompts (query, history, messages) "
            f"were kept; {REIMPORT}, or use --prompts distillkit"
        )
    if isinstance(views["messages"], list) and views["messages"]:
        msgs = [dict(m) for m in views["messages"]]
    elif isinstance(views.get("query"), str):
        msgs = _pairs_to_messages(views.get("history") or []) + [{"role": "user", "content": views["query"]}]
    else:
        raise UserError(f"instance {inst.id!r} has neither messages nor query in the release; use --prompts distillkit")
    if options is not None and options != inst.options:
        msgs[-1] = msgs[-1] | {"content": _move_options(inst, str(msgs[-1].get("content", "")), options)}
    return msgs


def base_prompt(inst: Instance, prompts: Prompts = "distillkit") -> str:
    """The base-model context from the chosen source of prompts."""
    return official_base_context(inst) if prompts == "official" else base_context(inst)


def chat_prompt(inst: Instance, options: dict[str, str] | None = None, prompts: Prompts = "distillkit") -> list[dict]:
    """The chat messages from the chosen source of prompts."""
    return official_chat_messages(inst, options) if prompts == "official" else chat_messages(inst, options)
