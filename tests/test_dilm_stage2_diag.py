"""The library-free measures of bench/bench_dilm_stage2.py: distinct n-grams and the matching distance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_dilm_stage2", ROOT / "bench" / "bench_dilm_stage2.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_distinct_n_counts_repeated_ngrams_once_across_texts():
    b = _bench()
    texts = ["The cat sat", "the cat ran"]
    assert b.distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 tokens
    assert b.distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice
    assert b.distinct_n(["one"], 2) == 0.0


def test_matching_distance_follows_the_weights():
    b = _bench()
    g_real = torch.tensor([1.0, 0.0])
    per_sample = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert b.matching_distance(g_real, per_sample, torch.tensor([1.0, 0.0])) == pytest.approx(0.0, abs=1e-6)
    assert b.matching_distance(g_real, per_sample, torch.tensor([0.0, 1.0])) == pytest.approx(1.0, abs=1e-6)
    assert b.matching_distance(g_real, per_sample, torch.tensor([0.5, 0.5])) == pytest.approx(1 - 2**-0.5, abs=1e-6)
