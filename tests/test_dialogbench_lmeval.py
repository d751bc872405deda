"""The lm-evaluation-harness export loads in `lm-eval` and scores like our `sum` normalisation."""

from __future__ import annotations

import hashlib
import json

import pytest

from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.lmeval_export import export_lm_eval
from distillkit.lm import load_local_lm
from distillkit.lm.loopback import JSONHandler, LoopbackServer
from distillkit.lm.offline import tiny_llama_folder


def test_export_loads_and_agrees_with_our_summed_likelihood(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    files = export_lm_eval(tmp_path / "lme", data="sample", lang="en")
    assert len(files) == 25 and (tmp_path / "lme" / "dialogbench_en.yaml").exists()
    tm = TaskManager(include_path=str(tmp_path / "lme"), include_defaults=False)
    assert "dialogbench_en_sf" in tm.all_tasks and "dialogbench_en" in tm.all_tasks

    lm = load_local_lm(str(tiny_llama_folder()), device="cpu")
    tasks = ["SF", "RC", "OD"]
    ours = evaluate(
        EvalSettings(model="tiny", mode="base", tasks=tasks, norm="sum"), tmp_path / "run", progress=False, lm=lm
    )
    harness = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=4, device="cpu")
    res = simple_evaluate(
        model=harness, tasks=[f"dialogbench_en_{t.lower()}" for t in tasks], task_manager=tm, log_samples=False
    )["results"]
    for t in tasks:
        assert 100 * res[f"dialogbench_en_{t.lower()}"]["acc,none"] == pytest.approx(
            ours["tasks"][t]["accuracy"], abs=0.01
        )


# ------------------------------------------------------------------------------------------ chat mode
REPLIES = (
    "{L}",
    "The answer is {L}.",
    "I would pick option {L} here.",
    "Hard to say without more context.",
    "<think>Maybe A, maybe not.</think>Answer: {L}",
)


def scripted_reply(messages: list[dict]) -> str:
    """A fixed answer per question: the letter and the phrasing follow from a hash of the last message."""
    key = hashlib.sha256(messages[-1]["content"].encode()).digest()
    return REPLIES[key[1] % len(REPLIES)].format(L="ABCD"[key[0] % 4])


class ScriptedChat:
    """distillkit's chat backend interface, answering like the loopback server."""

    def chat(self, convs, gen, on_result):
        for i, conv in enumerate(convs):
            on_result(i, scripted_reply(conv))


class ChatServer(LoopbackServer):
    """A chat server answering like `scripted_reply`; it keeps the conversations and decoding settings it saw."""

    def __init__(self) -> None:
        self.seen: list[list[dict]] = []
        self.settings: list[tuple[float, int]] = []
        outer = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.read_json()
                outer.seen.append(body["messages"])
                outer.settings.append((body["temperature"], body["max_tokens"]))
                answer = {"role": "assistant", "content": scripted_reply(body["messages"])}
                self.send_json(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
                    },
                )

        super().__init__(Handler)


def test_chat_export_through_local_chat_completions_scores_like_distillkit(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from distillkit.dialogbench.render import chat_messages
    from distillkit.dialogbench.schema import load_sample

    files = export_lm_eval(tmp_path / "lme", data="sample", lang="en", mode="chat")
    assert len(files) == 26 and (tmp_path / "lme" / "dialogbench_chat_en.yaml").exists()
    tm = TaskManager(include_path=str(tmp_path / "lme"), include_defaults=False)
    server = ChatServer()
    try:
        url = f"{server.url}/chat/completions"
        out = simple_evaluate(
            model="local-chat-completions",
            model_args={"model": "scripted", "base_url": url, "tokenizer_backend": None, "max_retries": 1},
            tasks=["dialogbench_chat_en"],
            task_manager=tm,
            apply_chat_template=True,
            log_samples=False,
        )
    finally:
        server.stop()
    # the model saw the dialogue as real chat turns (DialogBenchChatTask), as `dialogbench eval --mode chat` sends it
    sample = load_sample()
    assert sorted(map(json.dumps, server.seen)) == sorted(json.dumps(chat_messages(i)) for i in sample)
    assert set(server.settings) == {(0.0, 256)}  # greedy, 256 new tokens at most (the paper's setting)
    res = out["results"]

    ours = {}
    for extractor in ("lenient", "strict"):
        settings = EvalSettings(model="scripted", mode="chat", extractor=extractor)
        ours[extractor] = evaluate(settings, tmp_path / f"ours-{extractor}", progress=False, lm=ScriptedChat())
    for abbr in ours["lenient"]["tasks"]:
        task = res[f"dialogbench_chat_en_{abbr.lower()}"]
        for extractor in ("lenient", "strict"):
            assert 100 * task[f"exact_match,{extractor}"] == pytest.approx(
                ours[extractor]["tasks"][abbr]["accuracy"], abs=0.01
            )
    group = res["dialogbench_chat_en"]
    assert 100 * group["exact_match,lenient"] == pytest.approx(ours["lenient"]["overall"], abs=0.01)
    assert 100 * group["exact_match,strict"] == pytest.approx(ours["strict"]["overall"], abs=0.01)
    # the scripted phrasings make the extractor matter: lenient finds answers that strict does not
    assert 0 < ours["strict"]["overall"] < ours["lenient"]["overall"] < 100
