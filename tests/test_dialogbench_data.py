"""Tasks, schema, shipped sample set, rendering, official import/export, and bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app
from distillkit.dialogbench.official import export_official, import_official, normalise_choices
from distillkit.dialogbench.render import base_context, chat_messages, final_user_turn, official_base_context
from distillkit.dialogbench.schema import load_sample, read_jsonl, read_jsonl_lenient
from distillkit.dialogbench.tasks import DIMENSIONS, all_tasks, get_task, parse_tasks
from distillkit.errors import UserError


def test_twelve_tasks_in_four_dimensions():
    tasks = all_tasks()
    assert list(tasks) == ["SF", "IC", "KRG", "CRG", "DI", "MRG", "PRG", "RC", "ED", "NLI", "DS", "OD"]
    assert set(t.dimension for t in tasks.values()) == set(DIMENSIONS)
    assert sum(t.paper["num"] for t in tasks.values()) == 9811
    for t in tasks.values():
        for lang in ("en", "zh"):
            assert t.chat_instruction[lang] and t.base_instruction[lang] and t.base_header[lang]
            assert (t.slot is None) == (t.base_slot_header is None)
    assert get_task("slot filling").abbr == "SF" and [t.abbr for t in parse_tasks("sf, od")] == ["SF", "OD"]
    with pytest.raises(UserError, match="unknown task 'XX'"):
        parse_tasks("SF,XX")


def test_sample_set_covers_every_task_and_letter():
    items = load_sample()
    assert len(items) >= 36
    per_task = Counter(i.task for i in items)
    assert set(per_task) == set(all_tasks()) and min(per_task.values()) >= 3
    assert set(Counter(i.label for i in items)) == set("ABCD")
    for i in items:  # the gold text never repeats another option
        assert len(set(i.options.values())) == len(i.options)


def test_rendering_follows_the_official_structure():
    items = {i.task: i for i in load_sample()}
    sf = base_context(items["SF"])
    assert sf.startswith("Read the dialogue") and "【Dialogue content】User: " in sf
    assert sf.index("【Question】") < sf.index("【Answer】") and sf.endswith("【Answer】")
    di = items["DI"]
    assert "【Reply】" in base_context(di) and base_context(di).endswith("【User speech】")
    assert "【Answer】" in final_user_turn(di)  # DI's slot header differs between the two templates
    msgs = chat_messages(items["KRG"])  # dialogue ends with a user turn: joined to the question
    roles = [m["role"] for m in msgs]
    assert roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:], strict=False))
    assert msgs[-1]["content"].endswith(items["KRG"].options["D"])
    assert "【Candidate options】A. " in msgs[-1]["content"] and "【Knowledge】" in msgs[-1]["content"]


def _good() -> dict:
    return json.loads(load_sample()[0].model_dump_json())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: "{not json", "malformed JSON"),
        (lambda d: {**d, "task": "XYZ"}, "unknown task 'XYZ'"),
        (lambda d: {**d, "slot": None}, "needs its slot"),
        (lambda d: {**d, "options": {**d["options"], "E": "five"}}, "at most 4"),
        (lambda d: {**d, "label": "D", "options": {"A": "x", "B": "y", "C": "z"}}, "gold letter 'D' is not among"),
        (lambda d: {**d, "options": {"A": "x", "B": "None"}}, "empty or 'None'"),
        (lambda d: {k: v for k, v in d.items() if k != "dialogue"}, "dialogue"),
    ],
)
def test_bad_instances_give_one_line_naming_the_line(tmp_path, mutate, message):
    bad = mutate(_good())
    path = tmp_path / "x.jsonl"
    lines = [json.dumps(_good() | {"id": "ok-1"}), bad if isinstance(bad, str) else json.dumps(bad)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message) as e:
        read_jsonl(path)
    assert f"{path}:2" in str(e.value) and "\n" not in str(e.value)
    ok, skipped = read_jsonl_lenient(path)
    assert len(ok) == 1 and skipped[0]["line"] == 2


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1\n')
    with pytest.raises(SystemExit) as e:
        run_app(app, ["validate", str(path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "malformed JSON" in err
    with pytest.raises(SystemExit) as e:
        run_app(app, ["eval", "--model", "smollm2", "--tasks", "SF,NOPE", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "unknown task 'NOPE'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_app(
            app,
            [
                "eval",
                "--model",
                "m",
                "--mode",
                "base",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--max-retries",
                "0",
                "--out",
                str(tmp_path / "r2"),
            ],
        )
    assert e.value.code == 2 and "cannot reach the server at http://127.0.0.1:9/v1" in capsys.readouterr().err
    r5 = tmp_path / "r5"
    with pytest.raises(SystemExit) as e:
        run_app(
            app, ["eval", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--revision", "v1", "--out", str(r5)]
        )
    assert e.value.code == 2 and "apply to local models" in capsys.readouterr().err and not r5.exists()
    with pytest.raises(SystemExit) as e:
        run_app(app, ["eval", "--model", str(tmp_path / "missing-model"), "--out", str(tmp_path / "r3")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_app(app, ["eval", "--model", "m", "--mode", "both", "--out", str(tmp_path / "r4")])
    assert e.value.code == 2 and "--mode" in capsys.readouterr().err


def test_official_round_trip(tmp_path):
    items = load_sample()
    files = export_official(items, tmp_path)
    assert len(files) == 12 and (tmp_path / "data_en" / "Multi-trun_Response_Generation.json").exists()
    rec = json.loads((tmp_path / "data_en" / "Slot_Filling.json").read_text().splitlines()[0])
    fields = {"id", "domain", "choices", "label", "prompt_pretrain", "prompt_SFT", "query", "history", "messages"}
    assert fields <= set(rec)
    back, report = import_official(tmp_path, "en")
    assert not report["skipped"] and report["files"]["SF"]["paper_num"] == 879
    assert any("the paper reports 879" in w for w in report["warnings"])
    orig = {i.id: i for i in items}
    for i in back:
        o = orig[i.id]
        assert (i.options, i.label, i.slot, i.domain) == (o.options, o.label, o.slot, o.domain)
        assert [t.text for t in i.dialogue] == [t.text for t in o.dialogue]
        assert official_base_context(i) == base_context(o)  # the imported record keeps its prompt_pretrain


def test_official_option_formats_are_normalised(tmp_path):
    assert normalise_choices({"1": "x", "2": "y", "3": "z"}, "2") == ({"A": "x", "B": "y", "C": "z"}, "B")
    assert normalise_choices({"A": {"answer": "x"}, "B": {"person1": "y"}}, "A") == ({"A": "x", "B": "y"}, "A")
    folder = tmp_path / "data" / "data_en"
    folder.mkdir(parents=True)
    base = {
        "id": "1",
        "domain": "d",
        "history": [["hi", "hello"]],
        "label": "A",
        "query": "Based on the dialogue【Question】Who?【Candidate options】A. x B. y",
    }
    lines = [
        base | {"choices": {"A": "x", "B": "y"}},
        base | {"id": "2", "choices": {"A": "a", "B": "b", "C": "c", "D": "d", "E": "e"}},
        base | {"id": "3", "choices": {"A": "x", "B": "None"}},
        "{broken",
        base | {"id": "5", "choices": {"A": "x", "B": "y"}, "label": "C"},
        {
            "id": "6",
            "choices": {"A": "x", "B": "y"},
            "label": "B",
            "query": base["query"],
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": base["query"]},
            ],
        },
    ]
    (folder / "Slot_Filling.json").write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    items, report = import_official(tmp_path, "en")
    assert [i.id for i in items] == ["1", "6"] and items[0].slot == "Who?"
    assert len(report["skipped"]) == 4
    assert any("at most 4" in s for s in report["skipped"]) and any("not among" in s for s in report["skipped"])
    assert any("roles do not alternate" in w for w in report["warnings"])
    assert [t.text for t in items[1].dialogue] == ["a\nb", "c"]
    with pytest.raises(UserError, match="no official zh task files .* data/data_zh folder"):
        import_official(tmp_path / "data" / "data_en" / "..", "zh")


def test_chinese_templates_render():
    from distillkit.dialogbench.schema import Instance

    inst = Instance(
        id="zh-1",
        task="NLI",
        language="zh",
        domain="日常",
        slot="用户要去罗马。",
        dialogue=[{"speaker": "用户", "text": "我想订去罗马的机票。"}, {"speaker": "助手", "text": "好的。"}],
        options={"A": "蕴含", "B": "中立", "C": "矛盾"},
        label="A",
    )
    base = base_context(inst)
    assert base.startswith("阅读以下对话内容") and "【对话内容】用户: 我想订去罗马的机票。" in base
    assert "【假设】用户要去罗马。" in base and base.endswith("【答案】")
    last = chat_messages(inst)[-1]["content"]
    assert "【假设】用户要去罗马。【候选选项】A. 蕴含 B. 中立 C. 矛盾" in last
