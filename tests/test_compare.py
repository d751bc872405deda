"""`distill image compare`: every method through one evaluator, tables, plots, resume and bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from distillkit.errors import UserError
from distillkit.image.compare import make_compare_config, run_compare

TINY_NET = {"width": 16, "depth": 2}
TINY = {
    "data": {"dataset": "digits", "val_size": 200},
    "apm": {"iterations": 4, "student_epochs": 4, "num_checkpoints": 2, "refresh_every": 2, "lr_img": 5.0},
    "dm": {"iterations": 5, "batch_real": 32, "net_options": TINY_NET},
    "experts": {"num_experts": 1, "epochs": 3, "net_options": TINY_NET},
    "mtt": {"iterations": 3, "syn_steps": 3, "expert_epochs": 1, "max_start_epoch": 2},
    "eval": {"net_options": TINY_NET, "runs": 2, "epochs": 60},
    "full": {"runs": 0},
    "cross_archs": ["mlp"],
    "ipcs": [1, 2],
    "methods": ["apm", "mtt", "tesla", "dm", "herding", "kcenter", "random"],
}


@pytest.fixture(scope="module")
def comparison(digits_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    cfg = make_compare_config("quick", {**TINY, "teacher": {"net_options": TINY_NET}})
    return cfg, out, run_compare(cfg, out, digits_pool.manifest.parent), digits_pool


def test_every_method_ipc_label_and_network_has_a_row(comparison):
    cfg, out, m, _ = comparison
    rows = m["rows"]
    assert len(rows) == len(cfg.methods) * len(cfg.ipcs) * 3  # soft + hard on ConvNet, soft on the MLP
    baseline = {(r["ipc"], r["labels"]): r for r in rows if r["method"] == "random" and r["arch"] == "convnet"}
    for r in rows:
        assert r["labels"] in ("soft", "hard") and r["loss"] == ("ce" if r["labels"] == "hard" else "l1")
        base = baseline[(r["ipc"], r["labels"])]
        if r["arch"] == "mlp" or r["method"] == "random":
            assert r["vs_random"] is None
            continue
        assert r["runs"] == 2 and r["std_over"] == "runs"
        # the gain is measured against the random baseline under the same labels, with 2 x its spread over draws
        assert r["vs_random"] == r["mean"] - base["mean"]
        assert r["vs_random_uncertainty"] == 2 * base["std"]
        assert r["significant"] == (abs(r["vs_random"]) > 2 * base["std"])
    # the random row is the baseline itself: 2 networks on each of 3 draws, std over the draws
    for (ipc, label), r in baseline.items():
        saved = json.loads((out / "evals" / f"random_draws_ipc{ipc}_{label}.json").read_text())
        assert r["runs"] == 6 and r["std_over"] == "draws" and r["mean"] == saved["mean"] and r["std"] == saved["std"]
    # digits are learnable from 2 images per class: far above chance (10 %) for a real subset
    assert min(r["mean"] for r in rows if r["method"] == "random" and r["ipc"] == 2) > 30
    assert {d["arch"] for d in m["cross_arch_drop"]} == {"mlp"}


def test_costs_are_measured_for_every_set(comparison):
    cfg, out, m, _ = comparison
    for method in cfg.methods:
        for ipc in cfg.ipcs:
            cost = m["costs"][f"{method}_ipc{ipc}"]
            assert cost == json.loads((out / "sets" / f"{method}_ipc{ipc}" / "cost.json").read_text())
            rows = [r for r in m["rows"] if r["method"] == method and r["ipc"] == ipc]
            assert rows and all(r["seconds"] == cost["seconds"] and r["peak_mb"] == cost["peak_mb"] for r in rows)
    # a distiller's time is its own loop's seconds, as recorded in the set it wrote
    from distillkit.image.distilled import DistilledSet

    apm = DistilledSet.load(out / "sets" / "apm_ipc2" / "distilled.safetensors")
    assert m["costs"]["apm_ipc2"]["seconds"] == apm.meta["distill_seconds"] > 0


def test_outputs_are_written(comparison):
    _, out, m, _ = comparison
    for name in (
        "results.md",
        "results.csv",
        "accuracy_vs_ipc.png",
        "cost.png",
        "cross_arch.png",
        "metrics.json",
        "config.json",
        "sets/apm_ipc2/distilled.safetensors",
        "sets/mtt_ipc1/grid.png",
    ):
        assert (out / name).exists(), name
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(m["rows"])
    md = (out / "results.md").read_text()
    assert "| apm | 2 | convnet | soft | l1 |" in md and "| dm | 1 | convnet | hard | ce |" in md


def test_a_second_run_reuses_every_set_and_evaluation(comparison):
    cfg, out, m, pool = comparison
    stamps = {p: p.stat().st_mtime_ns for p in (out / "sets").glob("*/distilled.safetensors")}
    again = run_compare(cfg, out, pool.manifest.parent)
    assert again["rows"] == m["rows"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_run_may_change_what_it_computes_but_not_how(comparison):
    cfg, out, m, pool = comparison
    stamps = {p: p.stat().st_mtime_ns for p in (out / "sets").glob("*/distilled.safetensors")}
    fewer = cfg.model_copy(update={"ipcs": [2], "methods": ["herding", "random"]})
    rows = run_compare(fewer, out, pool.manifest.parent)["rows"]
    assert rows == [r for r in m["rows"] if r["ipc"] == 2 and r["method"] in ("herding", "random")]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rebuilt
    assert json.loads((out / "config.json").read_text())["ipcs"] == [2]
    longer = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"epochs": 61})})
    with pytest.raises(UserError, match=r"different config \(differs in: eval\)"):
        run_compare(longer, out, pool.manifest.parent)


def test_unknown_method_and_mismatched_pools_are_refused(digits_pool, tmp_path):
    with pytest.raises(UserError, match="unknown method 'mttt'"):
        make_compare_config("quick", {"methods": ["apm", "mttt"]})
    cfg = make_compare_config("quick", {**TINY, "teacher": {"arch": "mlp"}, "methods": ["random"]})
    with pytest.raises(UserError, match="holds convnet networks but the comparison uses mlp"):
        run_compare(cfg, tmp_path / "a", digits_pool.manifest.parent)
    signature = json.loads(digits_pool.manifest.read_text())
    signature["signature"]["dataset"] = "mnist"
    other = tmp_path / "pool"
    other.mkdir()
    for f in digits_pool.manifest.parent.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "pool.json").write_text(json.dumps(signature))
    with pytest.raises(UserError, match="built for other data"):
        run_compare(make_compare_config("quick", {**TINY, "methods": ["random"]}), tmp_path / "b", other)


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "distillkit.cli.distill", "image", "compare", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "DISTILLKIT_PROGRESS": "0"}, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--methods", "apm,nope"], "unknown method 'nope'"),
        (["--ipc", "1,x"], "comma-separated list of int"),
        (["--cross-arch", "resnet19"], "unknown architecture 'resnet19'"),
    ],
)
def test_cli_gives_one_line_for_bad_input(tmp_path, args, needle):
    proc = _cli(*args, "--out", str(tmp_path / "c"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not (tmp_path / "c" / "teachers").exists()  # refused before any work
