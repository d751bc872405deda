"""The demo section runs a DiLM job and shows generated texts (tiny models trained in the run here)."""

import base64
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

import distillkit.text.demo as demo
from distillkit.demo import run_demo
from distillkit.text.api import build_config

TINY = [
    'generator="tiny-gpt2"',
    'learner="tiny-bert"',
    "max_length=20",
    "max_train=40",
    "max_test=20",
    "max_validation=10",
    "dpcs=[2]",
    'methods=["dilm","random","full"]',
    "oversample=2",
    "num_sets=1",
    "runs_per_set=1",
    "stage1.steps=2",
    "gm.outer_loops=1",
    "gm.inner_loops=2",
    "gm.syn_batch=4",
    "gm.real_batch=4",
    "gm.rt_sets=1",
    "full_runs=1",
    "full_finetune.steps=5",
]


@pytest.mark.slow
def test_demo_section_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "demo_preset", lambda dataset: build_config(dataset, "quick", overrides=TINY))
    md = run_demo(tmp_path, only=["distillkit.text.demo"]).read_text()
    metrics = json.loads((tmp_path / "dilm" / "metrics.json").read_text())
    res = metrics["learners"]["tiny-bert"]
    assert "![accuracy vs DPC](dilm/accuracy_vs_dpc.png)" in md and (tmp_path / "dilm/accuracy_vs_dpc.png").exists()
    # the setting line: split sizes of max_train / max_test, stage-1 and stage-2 step counts, sets x runs
    assert metrics["split_sizes"]["train"]["size"] == 40 and metrics["split_sizes"]["test"]["size"] == 20
    assert "40 training reviews, 20 test reviews" in md
    assert "(stage 1: 2 steps; gradient matching: 2 generator steps" in md and "1 sets x 1 runs per cell" in md
    assert "closed-form head gradients), trained in this run." in md
    # the table: one row per method, "mean ± std" over the runs in metrics.json, to one decimal
    table = {}
    for line in md.splitlines():
        m = re.fullmatch(r"\| (.+?) \| (-?[\d.]+) ± ([\d.]+) \|", line)
        if m:
            table[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    assert set(table) == {"DiLM", "random", "full data"}
    for name, cell in (("DiLM", res["dilm"]["2"]), ("random", res["random"]["2"]), ("full data", res["full"]["all"])):
        acc = [r["accuracy"] for r in cell["runs"]]
        assert cell["n"] == len(acc) == 1
        assert table[name] == (round(float(np.mean(acc)), 1), round(float(np.std(acc)), 1)), name
        assert acc[0] * 20 / 100 == pytest.approx(round(acc[0] * 20 / 100))  # a whole number of 20 reviews
    # the texts shown are the first rows of each class of the DiLM set at DPC 2 (2 per class), cut at 220 chars
    rows = [json.loads(x) for x in (tmp_path / "dilm/sets/dilm/dpc2/set0/texts.jsonl").read_text().splitlines()]
    assert [(r["label"], r["label_name"]) for r in rows] == [(0, "great"), (0, "great"), (1, "other"), (1, "other")]
    assert md.count("\n- **") == 4
    for r in rows:
        text = r["review"] if len(r["review"]) <= 220 else r["review"][:217] + "..."
        assert f"\n- **{r['label_name']}**: {text}\n" in md
    # report.html: the chart inlined once, and the run's own table (one decimal, as above) with its config
    page = (tmp_path / "report.html").read_text()
    assert page.count(base64.b64encode((tmp_path / "dilm/accuracy_vs_dpc.png").read_bytes()).decode()) == 1
    section = page.split("<h3>DiLM text distillation run: dilm</h3>", 1)[1]
    for name, (mean, std) in table.items():
        assert f"<tr><td>{name}</td><td>{mean:.1f} ± {std:.1f}</td></tr>" in section
    assert "<summary>Resolved config (config.json)</summary>" in section
