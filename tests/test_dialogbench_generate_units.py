"""DialogBench generation without a server: plan balance, rounding, reply validation, no-LLM checks, prompts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from distillkit.dialogbench.generate.checks import CheckSettings, check_instance, duplicate_dialogues
from distillkit.dialogbench.generate.parse import InvalidReply, parse_reply
from distillkit.dialogbench.generate.plan import Job, balanced_count, make_plan
from distillkit.dialogbench.generate.prompts import build_messages, domains, response_schema, styles
from distillkit.dialogbench.schema import Instance
from distillkit.dialogbench.tasks import all_tasks
from distillkit.errors import UserError


def test_twenty_domains_and_unfriendly_styles_in_both_languages():
    for lang in ("en", "zh"):
        assert len(domains(lang)) == 20 and len(set(domains(lang))) == 20
        assert len(styles(lang)) >= 8
    assert {"rude and dismissive", "sarcastic", "impatient and curt"} <= set(styles("en"))


def test_plan_is_exactly_balanced():
    jobs = make_plan(["SF", "RC"], 40, "en", 4, 0, domains("en"), styles("en"))
    assert len(jobs) == 80 and len({j.id for j in jobs}) == 80 and len({j.seed for j in jobs}) == 80
    for task in ("SF", "RC"):
        mine = [j for j in jobs if j.task == task]
        assert set(Counter(j.domain for j in mine).values()) == {2}
        assert Counter(j.gold for j in mine) == {"A": 10, "B": 10, "C": 10, "D": 10}
        style_counts = Counter(j.styles[0] for j in mine).values()
        assert max(style_counts) - min(style_counts) <= 1
    # the plan is a pure function of the seed
    assert jobs == make_plan(["SF", "RC"], 40, "en", 4, 0, domains("en"), styles("en"))
    assert jobs != make_plan(["SF", "RC"], 40, "en", 4, 1, domains("en"), styles("en"))


def test_plan_with_mitigations_off_leaves_choices_to_the_model():
    jobs = make_plan(
        ["IC"], 6, "zh", 3, 0, [], styles("zh"), domain_balance=False, style_mix=False, position_balance=False
    )
    assert all(j.domain is None and j.styles is None and j.gold is None for j in jobs)


def test_rounding_is_explicit():
    assert balanced_count(40, 20, None) == (40, None)
    with pytest.raises(
        UserError,
        match=r"--per-task 30 cannot be split evenly over 20 domains; use --per-task 20 "
        r"or 40, or pass --round up/down",
    ):
        balanced_count(30, 20, None)
    assert balanced_count(30, 20, "up") == (40, "--per-task 30 rounded up to 40 (2 per domain)")
    assert balanced_count(30, 20, "down") == (20, "--per-task 30 rounded down to 20 (1 per domain)")
    assert balanced_count(5, 20, "down")[0] == 20  # rounding down to zero would generate nothing


def _job(task="SF", gold="C"):
    return Job(task, "en", 3, "Travel", ("sarcastic", "shy and brief"), gold, 11)


def _reply(task="SF", n_utt=12, **over):
    obj = {
        "dialogue": [
            {"speaker": ("User", "Assistant")[i % 2], "text": f"utterance number {i} about trains"}
            for i in range(n_utt)
        ],
        "correct": "the 9:40 train",
        "distractors": ["the 8:15 train", "the 10:05 bus", "a taxi at noon"],
    }
    if all_tasks()[task].slot:
        obj["slot"] = "Which connection does the user book?"
    obj.update(over)
    return json.dumps(obj)


def test_parse_places_gold_where_the_plan_says():
    for gold in "ABCD":
        inst = parse_reply(_reply(), _job(gold=gold), 4, {"x": 1})
        assert inst.label == gold and inst.options[gold] == "the 9:40 train"
        assert inst.id == "gen-en-SF-00003" and inst.domain == "Travel" and inst.provenance == {"x": 1}
    fenced = "```json\n" + _reply() + "\n```"
    assert parse_reply(fenced, _job(), 4, {}).label == "C"


@pytest.mark.parametrize(
    "text,msg",
    [
        ("Sure! Here is the JSON", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (_reply(slot=None), "slot"),
        (json.dumps({"dialogue": []}), "missing key"),
        (_reply(extra="x"), "unexpected key"),
        (_reply(distractors=["a", "b"]), "exactly 3 strings"),
        (_reply(correct=""), "option C is empty"),
        (_reply(dialogue=[]), "dialogue"),
    ],
)
def test_parse_rejects_with_a_reason(text, msg):
    with pytest.raises(InvalidReply, match=msg):
        parse_reply(text, _job(), 4, {})


def test_parse_without_position_balance_uses_the_models_choice():
    reply = json.dumps(
        {
            "dialogue": [{"speaker": "A", "text": "hi"}, {"speaker": "B", "text": "yo"}],
            "options": ["w", "x", "y", "z"],
            "answer_index": 2,
        }
    )
    inst = parse_reply(reply, Job("CRG", "en", 0, None, None, None, 0), 4, {})
    assert inst.label == "C" and inst.domain == "unspecified"
    with pytest.raises(InvalidReply, match="answer_index"):
        parse_reply(
            reply.replace('"answer_index": 2', '"answer_index": 7'), Job("CRG", "en", 0, None, None, None, 0), 4, {}
        )


def test_schema_and_prompt_follow_the_task():
    assert "slot" in response_schema("SF", 4)["properties"] and "slot" not in response_schema("RC", 4)["properties"]
    assert response_schema("SF", 3)["properties"]["distractors"]["maxItems"] == 2
    msgs = build_messages(_job(), 4)
    user = msgs[1]["content"]
    for part in (
        "## Goal",
        "## Input data",
        "## Contextual information",
        "## Prompt style",
        "Travel",
        "sarcastic",
        "at least 10 turns",
        "must not end the conversation",
        "`slot`",
        "`correct`",
        "`distractors`",
    ):
        assert part in user
    mrg = build_messages(Job("MRG", "en", 0, "Music", None, "A", 0), 4)[1]["content"]
    assert "ends with an utterance of User; the options are candidate next replies of Assistant" in mrg
    assert "reveal" not in mrg and "Speaker styles" not in mrg  # nothing to leak into without a slot
    zh = build_messages(Job("ED", "zh", 0, "医学", ("粗鲁、不屑一顾", "害羞、话少"), "A", 0), 4)[1]["content"]
    assert "医学" in zh and "粗鲁" in zh and "至少 10 轮" in zh
    # no gold position in the prompt: the model never chooses it
    assert "position" not in user.lower()


def _inst(**over):
    base = {
        "id": "x",
        "task": "SF",
        "dialogue": [{"speaker": ("U", "A")[i % 2], "text": f"turn {i} words here"} for i in range(12)],
        "slot": "When does it leave?",
        "options": {"A": "at nine", "B": "at ten", "C": "at noon", "D": "never"},
        "label": "A",
    }
    base.update(over)
    return Instance.model_validate(base)


@pytest.mark.parametrize(
    "over,reason",
    [
        ({}, None),
        ({"options": {"A": "at nine", "B": "at ten", "C": "at noon"}}, "option_count"),
        ({"dialogue": [{"speaker": "U", "text": "a"}] * 12}, "two_party"),
        ({"dialogue": [{"speaker": ("U", "A")[i % 2], "text": "x"} for i in range(6)]}, "dialogue_length"),
        ({"options": {"A": "At nine!", "B": "at nine", "C": "at noon", "D": "never"}}, "duplicate_options"),
        (
            {"options": {"A": "the train at nine", "B": "the train at nines", "C": "x", "D": "y"}},
            "near_duplicate_options",
        ),
        ({"slot": "It leaves at nine, right?"}, "answer_leak"),
    ],
)
def test_checks(over, reason):
    got = check_instance(_inst(**over), CheckSettings())
    assert (got.split(":")[0] if got else None) == reason


def test_duplicate_and_near_duplicate_dialogues():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    d1 = [{"speaker": ("U", "A")[i % 2], "text": " ".join(words[i:] + words[:i])} for i in range(12)]
    d3 = [dict(t) for t in d1]
    d3[0]["text"] = "something else entirely"
    d4 = [{"speaker": ("U", "A")[i % 2], "text": f"completely different {i} " * 3} for i in range(12)]
    items = [
        _inst(id="a", dialogue=d1),
        _inst(id="b", dialogue=d1),
        _inst(id="c", dialogue=d3),
        _inst(id="d", dialogue=d4),
    ]
    out = duplicate_dialogues(items, 0.8)
    assert out["b"].startswith("duplicate_dialogue: same dialogue as a")
    assert out["c"].startswith("near_duplicate_dialogue") and "d" not in out and "a" not in out
