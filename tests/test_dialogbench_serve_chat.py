"""bench/bench_dialogbench_serve_chat.py: `dialogbench eval` and lm-eval's chat backend against `transformers serve`."""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_dialogbench_serve_chat.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_serve_chat", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_agreement_counts_answers_and_says_why_they_differ():
    bench = bench_module()

    def run(answers: dict, replies: dict):
        return bench.Run("t", 1, 1.0, 1.0, 0.0, answers, replies)

    ours = run({"a": "A", "b": "B", "c": None, "d": "C"}, {"a": "A", "b": "B.", "c": "?", "d": "C"})
    theirs = run({"a": "A", "b": "C", "c": "D", "d": "D"}, {"a": "A", "b": "C.", "c": "?", "d": "C"})
    got = bench.agreement(ours, theirs)
    assert (got["items"], got["both_answered"], got["identical_answers"], got["identical_replies"]) == (4, 3, 1, 3)
    assert [(d["id"], d["why"]) for d in got["disagreements"]] == [
        ("b", "different replies"),
        ("c", "same reply, different extraction"),
        ("d", "same reply, different extraction"),
    ]
    with pytest.raises(RuntimeError, match="different items"):
        bench.agreement(ours, run({"a": "A"}, {"a": "A"}))


def test_serve_counts_as_missing_without_its_extra(monkeypatch):
    import transformers.utils.import_utils as import_utils

    bench = bench_module()
    monkeypatch.setattr(import_utils, "is_serve_available", lambda: False)  # as without fastapi/uvicorn
    assert bench.serve_available() is False


@pytest.mark.slow
def test_both_tools_read_the_same_answers_from_a_real_server(monkeypatch, tmp_path):
    bench = bench_module()
    if not bench.serve_available():
        pytest.skip("transformers serve needs transformers 5.x with the serving extra")
    pytest.importorskip("lm_eval", reason="needs lm-eval[api]")
    started = []

    class Recorded(bench.ServeProcess):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(bench, "ServeProcess", Recorded)
    res = bench.compare(pairs=[(2, 2)], rounds=1, tasks=["SF", "IC"], limit=1, workdir=tmp_path)

    (pair,) = res["pairs"]
    assert pair["agreement"]["items"] == 2
    # same messages, greedy decoding, one server: the same replies, so the same letters and the same accuracy
    assert pair["agreement"]["identical_replies"] == 2 and pair["agreement"]["disagreements"] == []
    assert pair["distillkit_overall"] == pair["lm_eval_overall"]
    assert pair["distillkit_wall_s"][0] > 0 and pair["lm_eval_wall_s"][0] > 0
    assert res["lm_eval_gen_kwargs"] == "until=<|im_end|>"
    (server,) = started
    assert server.proc.poll() is not None  # stopped at the end
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5)
