"""The demo section runs the quick DiLM job and shows generated texts (tiny models here)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

import distillkit.text.demo as demo
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
    monkeypatch.setattr(demo, "quick_preset", lambda dataset: build_config(dataset, "quick", overrides=TINY))
    md = demo.demo_section(tmp_path)
    assert "| DiLM |" in md and "| random |" in md and "| full data |" in md
    assert "![accuracy vs DPC](dilm/accuracy_vs_dpc.png)" in md and (tmp_path / "dilm/accuracy_vs_dpc.png").exists()
    assert md.count("- **great**:") == 2 and md.count("- **other**:") == 2
