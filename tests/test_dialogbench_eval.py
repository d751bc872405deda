"""Evaluation: base agrees with naive perplexity, circular, resume after a kill, chat through a server
that fails and comes back, skipped items, and the comparison report."""

from __future__ import annotations

import json
import math

import pytest
from test_lm_openai import ScriptedServer

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app as dialogbench_app
from distillkit.dialogbench.evaluate import EvalSettings, evaluate, make_units
from distillkit.dialogbench.positions import gold_swap
from distillkit.dialogbench.render import base_context, chat_messages
from distillkit.dialogbench.report import write_report
from distillkit.dialogbench.schema import load_sample
from distillkit.errors import UserError
from distillkit.lm import LoglikelihoodResult, load_local_lm
from distillkit.lm.offline import tiny_llama_folder
from distillkit.lm.openai_compat import OpenAICompatLM

TASKS = ["SF", "KRG", "DI", "NLI"]


@pytest.fixture(scope="module")
def tiny():
    return load_local_lm(str(tiny_llama_folder()), device="cpu")


def settings(**kw) -> EvalSettings:
    return EvalSettings(**({"model": "tiny", "mode": "base", "tasks": TASKS} | kw))


def test_base_matches_naive_perplexity_on_every_instance(tiny, tmp_path):
    m = evaluate(settings(), tmp_path / "run", progress=False, lm=tiny)
    assert m["complete"] and m["n_done"] == 12 and set(m["tasks"]) == set(TASKS)
    assert m["overall"] == pytest.approx(sum(t["accuracy"] for t in m["tasks"].values()) / 4, abs=0.01)
    recs = [json.loads(x) for x in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    by_id = {i.id: i for i in load_sample()}
    for r in recs:
        inst = by_id[r["id"]]
        naive = tiny.loglikelihood_naive([(base_context(inst), t) for t in inst.options.values()])
        ppl = {k: math.exp(-x.logprob / x.n_tokens) for k, x in zip(inst.options, naive, strict=True)}
        assert r["pred"]["token"] == sorted(ppl, key=lambda k: ppl[k])[0]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["norm"] == "token" and len(cfg["data_sha256"]) == 64 and cfg["generation"]["do_sample"] is False
    assert sum(m["letters"]["predicted"].values()) == 12


def test_circular_asks_every_position(tiny, tmp_path):
    units = make_units([i for i in load_sample() if i.task == "NLI"], circular=True)
    assert len(units) == 9 and {u.gold for u in units} == {"A", "B", "C"}
    for u in units:
        assert u.options[u.gold] == u.inst.gold_text
    m = evaluate(settings(circular=True), tmp_path / "c", progress=False, lm=tiny)
    assert m["n_items"] == sum(len(i.options) for i in load_sample() if i.task in TASKS)
    # base mode scores option texts, so a real LM picks the same text in every rotation: an instance is
    # right in all rotations or in none, and the three accuracies coincide
    recs = [json.loads(x) for x in (tmp_path / "c" / "items.jsonl").read_text().splitlines()]
    picked: dict[str, set[str]] = {}
    for r in recs:
        picked.setdefault(r["id"], set()).add(r["options"][r["pred"]["token"]])
    assert len(picked) == 12 and all(len(v) == 1 for v in picked.values())
    for t in m["tasks"].values():
        assert t["circular_accuracy"] == t["accuracy"] == t["rotation_accuracy"]


# Per sample instance: "right" answers the gold option, "A" always answers letter A (a position bias),
# "wrong" always a wrong option. Labels: SF B D A, KRG D A B, DI C A B, NLI (3 options) A C B.
POLICY = {
    "sample-sf-1": "right",
    "sample-sf-2": "A",  # gold D: wrong unrotated, right in 1 of 4 rotations
    "sample-sf-3": "A",  # gold A: right unrotated, right in 1 of 4 rotations
    "sample-krg-1": "right",
    "sample-krg-2": "right",
    "sample-krg-3": "right",
    "sample-di-1": "wrong",
    "sample-di-2": "wrong",
    "sample-di-3": "A",  # gold B
    "sample-nli-1": "A",  # gold A: right unrotated, right in 1 of 3 rotations
    "sample-nli-2": "right",
    "sample-nli-3": "A",  # gold B
}
# task: (accuracy, circular_accuracy, rotation_accuracy), by hand from POLICY
EXPECTED = {
    "SF": (66.67, 33.33, 50.0),  # rotations right: 4 + 1 + 1 of 12
    "KRG": (100.0, 100.0, 100.0),
    "DI": (0.0, 0.0, 8.33),  # 0 + 0 + 1 of 12
    "NLI": (66.67, 33.33, 55.56),  # 1 + 3 + 1 of 9
}


class PolicyChat:
    """A chat model that answers each rendered question by POLICY (looked up from the exact conversation)."""

    def __init__(self):
        self.questions: dict[str, tuple] = {}
        for inst in load_sample():
            letters, texts = list(inst.options), list(inst.options.values())
            for k in range(len(texts)):  # every cyclic arrangement of the options, and every gold swap
                shown = dict(zip(letters, texts[k:] + texts[:k], strict=True))
                self.questions[json.dumps(chat_messages(inst, shown))] = (inst, shown)
                swapped = gold_swap(inst, k)[0]
                self.questions[json.dumps(chat_messages(inst, swapped))] = (inst, swapped)
        self.asked: list[str] = []

    def chat(self, convs, config, on_result=None):
        outs = []
        for i, conv in enumerate(convs):
            inst, shown = self.questions[json.dumps(conv)]
            self.asked.append(inst.id)
            right = next(k for k, v in shown.items() if v == inst.gold_text)
            letters = list(shown)
            letter = {
                "right": right,
                "A": "A",
                "wrong": letters[(letters.index(right) + 1) % len(letters)],
            }[POLICY[inst.id]]
            outs.append(f"The answer is {letter}.")
            if on_result is not None:
                on_result(i, outs[-1])
        return outs


class PolicyBase:
    """A base model whose option log-likelihoods follow POLICY: "right" favours the gold text, "wrong" a
    fixed wrong text, and "A" ties every option (the first letter wins a tie, so it answers A)."""

    def __init__(self):
        self.by_context = {base_context(i): i for i in load_sample()}
        assert len(self.by_context) == len(load_sample())
        self.calls = 0

    def loglikelihood_detailed(self, reqs):
        self.calls += 1
        out = []
        for ctx, text in reqs:
            inst = self.by_context[ctx]
            wrong = next(v for v in inst.options.values() if v != inst.gold_text)
            favoured = {"right": inst.gold_text, "wrong": wrong, "A": None}[POLICY[inst.id]]
            lp = -1.0 if text == favoured else -3.0
            out.append(LoglikelihoodResult(lp, n_tokens=1, n_chars=len(text), is_greedy=False, truncated=False))
        return out


@pytest.mark.parametrize("mode", ["chat", "base"])
def test_circular_accuracy_with_a_scripted_model(mode, tmp_path):
    lm = PolicyChat() if mode == "chat" else PolicyBase()
    m = evaluate(settings(mode=mode, circular=True), tmp_path / mode, progress=False, lm=lm)
    assert m["complete"] and m["n_items"] == 9 * 4 + 3 * 3
    for task, (acc, circ, rot) in EXPECTED.items():
        t = m["tasks"][task]
        assert (t["accuracy"], t["circular_accuracy"], t["rotation_accuracy"]) == (acc, circ, rot), task
        assert t["n"] == 3
    # unweighted means of the task accuracies, 175/3 and 125/3 (the report averages the task accuracies after
    # rounding them to 2 decimals, so the last digit may be off by one)
    assert m["overall"] == pytest.approx(175 / 3, abs=0.01)
    assert m["overall_circular"] == pytest.approx(125 / 3, abs=0.01)
    # "A" answers A in all 18 rotations of its 5 instances; "right" and "wrong" answer A once per instance (7)
    assert m["letters"]["predicted"]["A"] == 25 and sum(m["letters"]["predicted"].values()) == 45
    assert m["letters"]["gold"] == {"A": 12, "B": 12, "C": 12, "D": 9}  # the gold visits every position once
    if mode == "chat":
        assert sorted(lm.asked) == sorted(i.id for i in load_sample() for _ in i.options if i.task in TASKS)
        assert m["unparsed"] == 0
    plain = evaluate(settings(mode=mode), tmp_path / f"{mode}-plain", progress=False, lm=type(lm)())
    assert {t: v["accuracy"] for t, v in plain["tasks"].items()} == {t: e[0] for t, e in EXPECTED.items()}
    assert "circular_accuracy" not in plain["tasks"]["SF"] and plain["n_items"] == 12


def test_gold_swap_moves_only_the_gold(tmp_path):
    m = evaluate(settings(mode="chat", gold_swap=True), tmp_path / "s", progress=False, lm=PolicyChat())
    assert m["complete"] and m["gold_swap"] and m["n_items"] == 9 * 4 + 3 * 3
    assert m["letters"]["gold"] == {"A": 12, "B": 12, "C": 12, "D": 9}  # the gold visits every letter once
    by_id = {i.id: i for i in load_sample()}
    for line in (tmp_path / "s" / "items.jsonl").read_text().splitlines():
        r = json.loads(line)
        inst = by_id[r["id"]]
        assert r["options"][r["gold"]] == inst.gold_text
        kept = {k: v for k, v in inst.options.items() if k not in (inst.label, r["gold"])}
        assert all(r["options"][k] == v for k, v in kept.items())  # every other option stays at its letter
    with pytest.raises(UserError, match="pass only one"):
        evaluate(settings(circular=True, gold_swap=True), tmp_path / "x", progress=False, lm=PolicyChat())


class Killer:
    """Wraps a LocalLM and raises KeyboardInterrupt after `n` scored instances (a kill mid-run)."""

    def __init__(self, lm, n):
        self.lm, self.n, self.calls = lm, n, 0

    def loglikelihood_detailed(self, reqs):
        if self.calls == self.n:
            raise KeyboardInterrupt
        self.calls += 1
        return self.lm.loglikelihood_detailed(reqs)


def test_killed_run_resumes_without_repeats_or_losses(tiny, tmp_path):
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        evaluate(settings(batch_size=1), out, progress=False, lm=Killer(tiny, 5))
    log = out / "items.jsonl"
    assert len(log.read_text().splitlines()) == 5
    assert json.loads((out / "metrics.json").read_text())["n_done"] == 5
    with log.open("a") as f:
        f.write('{"key": "half a line')  # what a kill during a write leaves behind
    again = Killer(tiny, 100)
    m = evaluate(settings(batch_size=1), out, progress=False, lm=again)
    assert again.calls == 7 and m["complete"] and m["resumed_items"] == 5
    keys = [json.loads(x)["key"] for x in log.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 12
    ref = evaluate(settings(), tmp_path / "ref", progress=False, lm=tiny)  # batched 8 instances at a time
    assert ref["tasks"] == m["tasks"]
    with pytest.raises(UserError, match="different config"):
        evaluate(settings(batch_size=1, norm="sum"), out, progress=False, lm=tiny)


def test_chat_mode_with_a_local_model(tiny, tmp_path):
    m = evaluate(
        settings(mode="chat", tasks=["RC", "ED"], max_new_tokens=4), tmp_path / "chat", progress=False, lm=tiny
    )
    assert m["complete"] and m["n_done"] == 6
    rec = json.loads((tmp_path / "chat" / "items.jsonl").read_text().splitlines()[0])
    assert rec["prompt"][-1]["role"] == "user" and "【Candidate options】" in rec["prompt"][-1]["content"]
    assert set(rec["pred"]) == {"strict", "lenient", "anchored", "original"} and isinstance(rec["output"], str)
    assert m["unparsed"] == sum(t["unparsed"] for t in m["tasks"].values())


def test_chat_through_a_server_that_fails_and_comes_back(tmp_path):
    srv = ScriptedServer(["ok"] * 5 + [503] * 100, answer=lambda msgs: "The answer is B.")
    port = srv.port
    s = settings(mode="chat", backend="openai", base_url=srv.url, model="m", concurrency=3)
    out = tmp_path / "srv"

    def client():
        return OpenAICompatLM(
            model="m",
            base_url=f"http://127.0.0.1:{port}/v1",
            concurrency=3,
            max_retries=1,
            backoff=0.01,
            cache_dir=False,
        )

    with pytest.raises(UserError, match="kept failing"):
        evaluate(s, out, progress=False, lm=client())
    assert len((out / "items.jsonl").read_text().splitlines()) == 5
    srv.stop()
    with pytest.raises(UserError, match="cannot reach the server"):
        evaluate(s, out, progress=False, lm=client())
    back = ScriptedServer(answer=lambda msgs: "The answer is B.", port=port)
    try:
        m = evaluate(s, out, progress=False, lm=client())
    finally:
        back.stop()
    assert m["complete"] and back.ok == 12 - 5
    assert m["letters"]["predicted"]["B"] == 12
    gold_b = sum(i.label == "B" for i in load_sample() if i.task in TASKS)
    assert m["overall_lenient"] == pytest.approx(
        sum(100 * sum(i.label == "B" for i in load_sample() if i.task == t) / 3 for t in TASKS) / 4, abs=0.01
    )
    assert gold_b > 0


def test_invalid_lines_are_skipped_and_reported(tiny, tmp_path):
    good = [json.loads(i.model_dump_json()) for i in load_sample() if i.task == "SF"]
    data = tmp_path / "d.jsonl"
    data.write_text(
        "\n".join(
            [
                json.dumps(good[0]),
                '{"id": "broken"',
                json.dumps(good[1] | {"label": "D", "options": {"A": "x", "B": "y"}}),
                json.dumps(good[2]),
            ]
        )
        + "\n"
    )
    with pytest.raises(UserError, match="d.jsonl:2: malformed JSON"):
        evaluate(settings(data=str(data), tasks=["SF"]), tmp_path / "strict", progress=False, lm=tiny)
    m = evaluate(settings(data=str(data), tasks=["SF"], skip_invalid=True), tmp_path / "s", progress=False, lm=tiny)
    assert m["n_done"] == 2 and [s["line"] for s in m["skipped"]] == [2, 3]
    md = write_report([tmp_path / "s"], tmp_path / "rep").read_text()
    assert "Skipped instances" in md and "not among" in md


def test_report_compares_runs(tiny, tmp_path):
    evaluate(settings(), tmp_path / "a", progress=False, lm=tiny)
    evaluate(settings(norm="char", circular=True), tmp_path / "b", progress=False, lm=tiny)
    md = write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")
    text = md.read_text()
    assert "| tiny (base) | ? | base | token |" in text and "Circular evaluation" in text
    assert "Predicted letters" in text
    for f in ("results.csv", "tasks_bar.png", "tasks_radar.png", "letters.png"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert len((tmp_path / "rep" / "results.csv").read_text().splitlines()) == 3
    with pytest.raises(UserError, match="no metrics.json"):
        write_report([tmp_path], tmp_path / "rep2")
    assert (tmp_path / "a" / "report.html").stat().st_size > 1000 and (tmp_path / "rep" / "report.html").exists()
    # the paired comparison from the command line: the 12 unrotated items of `a` are shared with `b`
    run_app(dialogbench_app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.md")])
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert cmp["overall"]["n"] == 12 and cmp["only_b"] == 9 * 4 + 3 * 3 - 12
    # the SF row says what the shared items' predictions say (a scored by token, b by char normalisation)
    items = {run: [json.loads(x) for x in (tmp_path / run / "items.jsonl").read_text().splitlines()] for run in "ab"}
    shared = {r["key"] for r in items["a"]} & {r["key"] for r in items["b"]}
    acc = {
        run: [100 * (r["pred"][norm] == r["gold"]) for r in items[run] if r["task"] == "SF" and r["key"] in shared]
        for run, norm in (("a", "token"), ("b", "char"))
    }
    a, b = (sum(acc[run]) / len(acc[run]) for run in "ab")
    assert f"| SF | {len(acc['a'])} | {a:.2f} | {b:.2f} | {a - b:+.2f} |" in (tmp_path / "c.md").read_text()


def test_a_local_model_changed_since_the_run_is_refused_on_resume(tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_folder(), model)
    s = EvalSettings(model=str(model), mode="base", tasks=["NLI"], device="cpu")
    evaluate(s, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_identity"].startswith("files:")
    evaluate(s, tmp_path / "run", progress=False)  # the same model: resumed
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # the folder now holds another
    with pytest.raises(UserError, match="differs in: model_identity"):
        evaluate(s, tmp_path / "run", progress=False)
