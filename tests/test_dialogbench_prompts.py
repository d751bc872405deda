"""--prompts official|distillkit: an imported release asked with its own prompts verbatim, or with distillkit's
templates; the exact text a scripted model receives in each mode, the resume guard, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app
from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.official import export_official, import_official
from distillkit.dialogbench.render import base_context, chat_messages, options_line
from distillkit.dialogbench.report import write_report
from distillkit.dialogbench.schema import Instance, read_jsonl, write_jsonl
from distillkit.errors import UserError
from distillkit.lm import LoglikelihoodResult

RELEASE = Path(__file__).parent / "data" / "dialogbench_official"
FILES = {"SF": "Slot_Filling.json", "MRG": "Multi-trun_Response_Generation.json"}


def release_records() -> dict[str, dict]:
    """The fixture's records as the release has them, read without distillkit."""
    folder = RELEASE / "data" / "data_en"
    return {r["id"]: r for name in FILES.values() for r in map(json.loads, (folder / name).read_text().splitlines())}


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The fixture release imported to instance JSONL, as `dialogbench import` writes it."""
    instances, report = import_official(RELEASE, "en")
    assert not report["skipped"] and len(instances) == 5
    return write_jsonl(tmp_path_factory.mktemp("data") / "official_en.jsonl", instances)


class ScriptedChat:
    """Answers every question with 'B' and keeps the conversations it was sent."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def chat(self, convs, config, on_result=None):
        for i, conv in enumerate(convs):
            self.seen.append(conv)
            if on_result is not None:
                on_result(i, "The answer is B.")
        return ["The answer is B."] * len(convs)


class ScriptedBase:
    """Scores the option whose text is longest highest, and keeps the contexts it was sent."""

    def __init__(self):
        self.contexts: list[str] = []

    def loglikelihood_detailed(self, reqs):
        self.contexts += [ctx for ctx, _ in reqs]
        return [LoglikelihoodResult(float(len(t)), 1, len(t), False, False) for _, t in reqs]


def settings(data: Path, **kw) -> EvalSettings:
    return EvalSettings(**({"model": "scripted", "mode": "chat", "data": str(data), "tasks": list(FILES)} | kw))


def official_messages(rec: dict) -> list[dict]:
    """What the release's native chat interfaces receive: its messages, else history pairs then the query."""
    if "messages" in rec:
        return rec["messages"]
    msgs = [
        {"role": r, "content": t} for pair in rec["history"] for r, t in zip(("user", "assistant"), pair, strict=True)
    ]
    return msgs + [{"role": "user", "content": rec["query"]}]


def test_chat_official_sends_the_release_text_verbatim(imported, tmp_path):
    lm = ScriptedChat()
    m = evaluate(settings(imported, prompts="official"), tmp_path / "official", progress=False, lm=lm)
    release = release_records()
    by_last = {json.dumps(conv[-1]): conv for conv in lm.seen}
    assert len(lm.seen) == 5
    for rec in release.values():
        assert official_messages(rec) in lm.seen, rec["id"]  # every message verbatim, the question included
    assert by_last[json.dumps({"role": "user", "content": release["sf-002"]["query"]})][-2] == {
        "role": "assistant",
        "content": "Then add roughly 350 ml of water.",
    }
    # sf-003 has no messages in the release: its history pairs, then its query
    assert official_messages(release["sf-003"])[-1]["content"].startswith("Read the dialogue above carefully")
    items = [json.loads(x) for x in (tmp_path / "official" / "items.jsonl").read_text().splitlines()]
    assert {r["id"]: r["prompt"] for r in items} == {i: official_messages(r) for i, r in release.items()}
    assert m["prompts"] == "official" and m["tasks"]["SF"]["accuracy"] == pytest.approx(100 / 3, abs=0.01)
    assert json.loads((tmp_path / "official" / "config.json").read_text())["prompts"] == "official"


def test_chat_distillkit_renders_its_own_templates(imported, tmp_path):
    lm = ScriptedChat()
    m = evaluate(settings(imported), tmp_path / "distillkit", progress=False, lm=lm)
    instances = {i.id: i for i in read_jsonl(imported)}
    assert sorted(map(json.dumps, lm.seen)) == sorted(json.dumps(chat_messages(i)) for i in instances.values())
    release = release_records()
    for conv in lm.seen:  # distillkit's instruction, never the release's own
        assert conv[-1]["content"].count("Based on the dialogue above") == 1
        assert all("Read the dialogue above carefully" not in msg["content"] for msg in conv)
        assert conv not in [official_messages(r) for r in release.values()]
    # the dialogue itself is the same: only the instruction differs
    sf1 = next(c for c in lm.seen if "rent a car" in c[0]["content"])
    assert sf1[:-1] == release["sf-001"]["messages"][:-1]
    assert m["prompts"] == "distillkit"


def test_base_official_scores_after_prompt_pretrain(imported, tmp_path):
    release = release_records()
    lm = ScriptedBase()
    evaluate(settings(imported, mode="base", prompts="official"), tmp_path / "official", progress=False, lm=lm)
    assert set(lm.contexts) == {r["prompt_pretrain"] for r in release.values()}
    lm = ScriptedBase()
    evaluate(settings(imported, mode="base"), tmp_path / "distillkit", progress=False, lm=lm)
    assert set(lm.contexts) == {base_context(i) for i in read_jsonl(imported)}
    assert not set(lm.contexts) & {r["prompt_pretrain"] for r in release.values()}


class KilledChat(ScriptedChat):
    """Killed after answering `n` questions."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def chat(self, convs, config, on_result=None):
        for i, conv in enumerate(convs):
            if len(self.seen) == self.n:
                raise KeyboardInterrupt
            self.seen.append(conv)
            on_result(i, "The answer is B.")


def test_resume_with_the_other_prompts_is_refused(imported, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(settings(imported, prompts="official"), out, progress=False, lm=KilledChat(2))
    lm = ScriptedChat()
    with pytest.raises(UserError, match=r"different config \(differs in: prompts\)"):
        evaluate(settings(imported, prompts="distillkit"), out, progress=False, lm=lm)
    assert lm.seen == [] and len((out / "items.jsonl").read_text().splitlines()) == 2
    again = ScriptedChat()  # the same prompts: resumed, nothing asked twice
    m = evaluate(settings(imported, prompts="official"), out, progress=False, lm=again)
    assert m["resumed_items"] == 2 and len(again.seen) == 3 and m["complete"]


def test_circular_official_moves_only_the_options_line(imported, tmp_path):
    lm = ScriptedChat()
    evaluate(settings(imported, prompts="official", circular=True), tmp_path / "c", progress=False, lm=lm)
    rec = release_records()["mrg-001"]
    ours = [c for c in lm.seen if c[0]["content"] == rec["messages"][0]["content"]]
    assert len(ours) == 3
    texts = list(rec["choices"].values())
    for k in range(3):  # rotation k: the options line rotated, every other character as in the release
        rotated = dict(zip("ABC", texts[k:] + texts[:k], strict=True))
        question = rec["query"].replace(options_line(rec["choices"]), options_line(rotated))
        assert rec["messages"][:-1] + [{"role": "user", "content": question}] in ours


def test_instances_without_official_prompts_give_one_line(imported, tmp_path):
    with pytest.raises(
        UserError,
        match=r"'sample-sf-1' is not from the official release \(source: distillkit sample set\).*--prompts distillkit",
    ):
        evaluate(
            EvalSettings(model="m", prompts="official", tasks=["SF"]), tmp_path / "s", progress=False, lm=ScriptedChat()
        )
    assert not (tmp_path / "s").exists()  # refused before the run folder is written
    # a file imported before the chat prompts were kept: base mode still has prompt_pretrain, chat says to re-import
    old = []
    for inst in read_jsonl(imported):
        prov = inst.provenance | {
            "official": {k: inst.provenance["official"][k] for k in ("prompt_pretrain", "prompt_SFT")}
        }
        old.append(Instance.model_validate(inst.model_dump() | {"provenance": prov}))
    old_file = write_jsonl(tmp_path / "old.jsonl", old)
    with pytest.raises(UserError, match="imported before the release's chat prompts .* import the release again"):
        evaluate(settings(old_file, prompts="official"), tmp_path / "old", progress=False, lm=ScriptedChat())
    evaluate(
        settings(old_file, mode="base", prompts="official"), tmp_path / "old-base", progress=False, lm=ScriptedBase()
    )
    # options the release's question does not spell as 'A. x B. y': they cannot be moved for --circular
    odd = [i for i in read_jsonl(imported) if i.id == "mrg-002"][0]
    views = odd.provenance["official"]
    msgs = views["messages"][:-1] + [{"role": "user", "content": views["query"].replace("A. ", "A) ")}]
    prov = odd.provenance | {"official": views | {"messages": msgs}}
    odd_file = write_jsonl(tmp_path / "odd.jsonl", [odd.model_copy(update={"provenance": prov})])
    evaluate(settings(odd_file, prompts="official"), tmp_path / "odd", progress=False, lm=ScriptedChat())
    with pytest.raises(
        UserError, match="'mrg-002': the release's question does not hold its options .* drop --circular"
    ):
        evaluate(
            settings(odd_file, prompts="official", circular=True), tmp_path / "odd-c", progress=False, lm=ScriptedChat()
        )


def test_cli_and_report_name_the_prompts(imported, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_app(app, ["eval", "--model", "m", "--prompts", "release", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--prompts" in capsys.readouterr().err
    url = "http://127.0.0.1:9/v1"  # never reached: the data are refused first
    with pytest.raises(SystemExit) as e:
        run_app(app, ["eval", "--model", "m", "--base-url", url, "--prompts", "official", "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not from the official release" in err and len(err.strip().splitlines()) == 1
    evaluate(settings(imported, prompts="official"), tmp_path / "a", progress=False, lm=ScriptedChat())
    evaluate(settings(imported), tmp_path / "b", progress=False, lm=ScriptedChat())
    md = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep").read_text()
    assert "| scripted (chat, official prompts) | ? | chat | lenient | official |" in md
    assert "| scripted (chat) | ? | chat | lenient | distillkit |" in md
    assert "<td>prompts</td><td>official</td>" in (tmp_path / "a" / "report.html").read_text()


def test_export_of_imported_instances_keeps_the_release_text(imported, tmp_path):
    export_official(read_jsonl(imported), tmp_path / "again")
    release = release_records()
    for name in FILES.values():
        for line in (tmp_path / "again" / "data_en" / name).read_text().splitlines():
            rec = json.loads(line)
            orig = release[rec["id"]]
            for view in ("prompt_pretrain", "prompt_SFT", "query", "history", "messages"):
                if view in orig:
                    assert rec[view] == orig[view], (rec["id"], view)
            if "messages" not in orig:  # rendered by distillkit where the release had none
                assert rec["messages"] == chat_messages(next(i for i in read_jsonl(imported) if i.id == rec["id"]))
