"""In-context learning: prompt building (the query is never cut), label-word scoring through distillkit.lm."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from distillkit.data.text import TextDataset
from distillkit.text.icl import build_prompt, icl_evaluate, pick_demonstrations

SMALL = TextDataset(
    [("lovely tea",), ("awful tea",), ("great snack",), ("bad snack",)],
    np.array([0, 1, 0, 1]),
    ["great", "other"],
    ["review"],
)
TEST = TextDataset(
    [("the great cookies",), ("the other cookies",), ("great!",)], np.array([0, 1, 0]), ["great", "other"], ["review"]
)


class WordTok:
    def __call__(self, text):
        class R:
            input_ids = text.split()

        return R()


class KeywordLM:
    """Scores a label word by whether it appears in the query (the last example of the prompt)."""

    tokenizer = WordTok()

    def __init__(self):
        self.requests = []

    def loglikelihood(self, requests):
        self.requests += requests
        return [0.0 if word.strip() in prompt.split("\n\n")[-1] else -5.0 for prompt, word in requests]


def test_demonstrations_are_balanced_and_interleaved():
    idx = pick_demonstrations(SMALL, 2, seed=0)
    assert sorted(idx) == [0, 1, 2, 3] and [SMALL.labels[i] for i in idx] == [0, 1, 0, 1]
    assert len(pick_demonstrations(SMALL, 1, seed=0)) == 2


def test_prompt_layout_and_query_is_never_cut():
    demos = pick_demonstrations(SMALL, 2, seed=0)
    prompt, dropped = build_prompt(SMALL, demos, ("my query",), ["great", "other"], WordTok(), 1000)
    assert dropped == 0 and prompt.endswith("Review: my query\nSentiment:")
    assert prompt.count("Sentiment: great") == 2 and prompt.count("Sentiment: other") == 2
    short, dropped = build_prompt(SMALL, demos, ("my query " * 5,), ["great", "other"], WordTok(), 24)
    assert dropped >= 3 and short.endswith("Review: " + "my query " * 5 + "\nSentiment:")


def test_label_word_scoring_picks_the_most_likely_word():
    lm = KeywordLM()
    res = icl_evaluate(lm, SMALL, TEST, ["great", "other"], 1, seed=0)
    assert res["accuracy"] == pytest.approx(100.0) and res["demonstrations"] == 2
    assert len(lm.requests) == 6 and {w for _, w in lm.requests} == {" great", " other"}


def test_icl_with_a_real_tiny_causal_lm():
    from distillkit.lm import load_local_lm, tiny_llama_folder

    lm = load_local_lm(str(tiny_llama_folder()), device="cpu", max_length=256)
    res = icl_evaluate(lm, SMALL, TEST, ["great", "other"], 2, seed=0, max_tokens=256)
    assert 0 <= res["accuracy"] <= 100 and res["demonstrations_dropped"] == 0
    # the same requests scored directly agree with the evaluator's prediction
    demos = pick_demonstrations(SMALL, 2, 0)
    prompt, _ = build_prompt(SMALL, demos, TEST.texts[0], ["great", "other"], lm.tokenizer, 256)
    ll = lm.loglikelihood([(prompt, " great"), (prompt, " other")])
    assert all(np.isfinite(ll)) and ll[0] != ll[1]


def test_icl_cli_on_a_saved_set(tmp_path, capsys):
    from distillkit.cli.common import run_app
    from distillkit.cli.text import app
    from distillkit.lm import tiny_llama_folder
    from distillkit.text.synthetic import save_text_set

    prov = {"label_names": SMALL.label_names, "text_fields": SMALL.text_fields, "dataset": "fine_foods"}
    save_text_set(SMALL, tmp_path / "s", prov)
    run_app(
        app,
        [
            "icl",
            "--set-path",
            str(tmp_path / "s"),
            "--model",
            str(tiny_llama_folder()),
            "--max-test",
            "4",
            "--max-tokens",
            "512",
            "--shots-per-class",
            "1",
        ],
    )
    assert "ICL accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        run_app(app, ["icl", "--set-path", str(tmp_path / "s"), "--model", str(tmp_path / "missing")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
