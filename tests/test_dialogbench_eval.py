"""Evaluation: base agrees with naive perplexity, circular, resume after a kill, chat through a server
that fails and comes back, skipped items, and the comparison report."""

from __future__ import annotations

import json
import math

import pytest
from test_lm_openai import ScriptedServer

from distillkit.dialogbench.evaluate import EvalSettings, evaluate, make_units
from distillkit.dialogbench.render import base_context
from distillkit.dialogbench.report import write_report
from distillkit.dialogbench.schema import load_sample
from distillkit.errors import UserError
from distillkit.lm import load_local_lm
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
    for t in m["tasks"].values():
        assert t["circular_accuracy"] <= t["accuracy"]


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
