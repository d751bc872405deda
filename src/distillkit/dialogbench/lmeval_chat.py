"""lm-evaluation-harness pieces for DialogBench chat mode: the task class and the answer-extraction filter.

The exported task YAML refers to these through a small `dialogbench_utils.py` beside it (`!function`), so
importing this module needs `lm_eval`; the rest of distillkit does not.
"""

from __future__ import annotations

from lm_eval.api.filter import Filter
from lm_eval.api.task import ConfigurableTask

from distillkit.dialogbench.extract import EXTRACTORS, extract
from distillkit.lm.reasoning import answer_text

INVALID = "[invalid]"  # what an unanswered item becomes (never equal to a gold letter)


def doc_options(doc: dict) -> dict[str, str]:
    """The document's options as letter -> text."""
    return dict(zip(doc["letters"], doc["choices"], strict=True))


class DialogBenchAnswer(Filter):
    """Each generation -> the option letter found by one of distillkit's extractors (default: lenient)."""

    def __init__(self, extractor: str = "lenient", **kwargs) -> None:
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor {extractor!r}; use one of {', '.join(EXTRACTORS)}")
        self.extractor = extractor

    def letter(self, response: str | None, doc: dict) -> str:
        found = extract(answer_text(response or ""), doc["language"], doc_options(doc)).get(self.extractor)
        return found or INVALID

    def apply(self, resps, docs):
        return [[self.letter(r, doc) for r in rs] for rs, doc in zip(resps, docs, strict=True)]


class DialogBenchChatTask(ConfigurableTask):
    """A `generate_until` task whose chat prompt is the real dialogue history, as `dialogbench eval --mode chat`.

    With a chat template (`--apply_chat_template`, needed by `local-chat-completions`) the model gets the dialogue
    as alternating user/assistant messages plus the final question turn; without one it gets the flat prompt
    (the official `prompt_SFT` view) from `doc_to_text`.
    """

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(config=config, **kwargs)

    def fewshot_context(
        self,
        doc: dict,
        num_fewshot: int,
        system_instruction: str | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool = False,
        chat_template=None,
        gen_prefix: str | None = None,
    ):
        if num_fewshot:
            raise ValueError("DialogBench is zero-shot; drop --num_fewshot")
        if not (apply_chat_template and chat_template):
            return super().fewshot_context(
                doc,
                num_fewshot,
                system_instruction=system_instruction,
                apply_chat_template=apply_chat_template,
                fewshot_as_multiturn=fewshot_as_multiturn,
                chat_template=chat_template,
                gen_prefix=gen_prefix,
            )
        system = [{"role": "system", "content": system_instruction}] if system_instruction else []
        messages = [{"role": m["role"], "content": m["content"]} for m in doc["messages"]]
        return chat_template(system + messages, add_generation_prompt=True)
