"""bench/gpu_check.sh --smoke: the GPU check's every step runs (tiny, on the CPU) and writes a sane JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    env = {**os.environ, "PYTHON": sys.executable, "DISTILLKIT_PROGRESS": "0"}
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_smoke_runs_the_gpu_test_bodies(smoke):
    tests = smoke["tests"]
    assert smoke["size"] == "smoke" and smoke["environment"]["device"] == "cpu"
    assert tests["tests"] >= 1 and tests["passed"] == tests["tests"] and tests["failed"] == []


def test_apm_rows_are_accuracies_with_their_caps(smoke):
    apm = smoke["apm_paper"]
    assert apm["caps"]["apm.iterations"] == {"used": 2, "published": 2500}
    for name in ("mnist", "fashion_mnist"):
        row = apm[name]
        for key in ("apm", "random", "full"):
            assert 0.0 <= row[key] <= 100.0, (name, key, row[key])
        assert row["apm_minus_random"] == pytest.approx(row["apm"] - row["random"])
        assert row["seconds"] > 0
    assert apm["mnist"]["protocol"] != "" and apm["mnist"]["apm"] != apm["fashion_mnist"]["apm"]


def test_memory_rows_compare_apm_with_mtt(smoke):
    rows = smoke["apm_vs_mtt"]["rows"]
    assert {(r["method"], r["ipc"]) for r in rows} == {("apm", 1), ("mtt", 1), ("tesla", 1)}
    for r in rows:
        assert r["peak_mb"] >= 0 and r["sec"] > 0 and math.isfinite(r["published_total_h"])
    mtt = next(r for r in rows if r["method"] == "mtt")
    assert mtt["time_vs_mtt"] == 1.0 and mtt["memory_vs_mtt"] in (1.0, None)


def test_dialogbench_throughput_and_agreement(smoke):
    lik = smoke["dialogbench_loglik"]
    assert lik["instances"] > 0 and lik["options"] >= 2 * lik["instances"]
    assert lik["ours_inst_per_s"] > 0 and lik["naive_inst_per_s"] > 0
    assert lik["max_abs_logprob_diff_vs_naive"] < 1e-2  # the cached scoring equals the naive loop
    assert lik["agree_token_vs_naive"] == 1.0
    assert all(s.get("seconds", 0) > 0 for s in smoke["sections"].values())
