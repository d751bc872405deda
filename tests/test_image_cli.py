"""`distill image` end to end on real data, and one clear line for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

FAST = [
    "--set",
    "teacher.epochs=20",
    "--set",
    'teacher.net_options={"width": 16, "depth": 2}',
    "--set",
    'eval.net_options={"width": 16, "depth": 2}',
    "--set",
    "eval.runs=2",
    "--set",
    "eval.epochs=30",
    "--set",
    "apm.iterations=6",
    "--set",
    "apm.student_epochs=4",
    "--set",
    "apm.num_checkpoints=2",
    "--set",
    "full.runs=1",
    "--set",
    "full.epochs=2",
]


def distill(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0"}
    cmd = [sys.executable, "-c", "from distillkit.cli.distill import main; main()", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    distill("image", "run", "--dataset", "digits", "--ipc", "2", "--out", str(out), *FAST)
    return out


def test_run_writes_everything(run_dir):
    for name in [
        "config.json",
        "metrics.json",
        "distilled.safetensors",
        "grid.png",
        "accuracy.png",
        "teachers/pool.json",
        "teachers/teacher_0.safetensors",
        "teachers/teacher_0.json",
    ]:
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    results = metrics["results"]
    assert set(results) == {"apm", "random", "full"}
    for name, r in results.items():  # metrics.json holds exactly the cached evaluations
        assert r == json.loads((run_dir / "evals" / f"{name}.json").read_text())
    assert len(results["apm"]["runs"]) == 2 and len(results["random"]["runs"]) == 2 * 3  # 2 runs x 3 draws
    assert abs(results["random"]["mean"] - sum(results["random"]["runs"]) / 6) < 1e-9
    assert metrics["apm_minus_random"] == results["apm"]["mean"] - results["random"]["mean"]
    assert metrics["gain_over_random"]["apm"]["uncertainty"] == 2 * results["random"]["std"]
    assert results["full"]["n_images"] == 1797 - 449 - 130 and results["apm"]["n_images"] == 20
    teacher_meta = json.loads((run_dir / "teachers" / "teacher_0.json").read_text())
    assert metrics["teacher"]["test_acc"] == teacher_meta["test_acc"] and teacher_meta["epochs_run"] <= 20
    tensors = safetensors.torch.load_file(run_dir / "distilled.safetensors")
    assert tensors["images"].shape == (20, 1, 8, 8) and tensors["labels"].tolist() == [
        c for c in range(10) for _ in "ab"
    ]
    # the soft labels are the label teacher's logits on the distilled images themselves
    from distillkit.image.teacher import TeacherPool
    from distillkit.image.train import predict

    pool = TeacherPool(run_dir / "teachers")
    assert torch.allclose(tensors["soft_labels"], predict(pool.nets[0], tensors["images"]), atol=1e-5)


def test_rerun_resumes_without_recomputing(run_dir):
    before = (run_dir / "evals" / "apm.json").stat().st_mtime
    proc = distill("image", "run", "--dataset", "digits", "--ipc", "2", "--out", str(run_dir), *FAST)
    assert (run_dir / "evals" / "apm.json").stat().st_mtime == before
    assert "apm" in proc.stdout


def test_the_saved_config_reruns_the_same_job(run_dir, tmp_path):
    config = run_dir / "config.json"
    before = (run_dir / "evals" / "apm.json").stat().st_mtime
    distill("image", "run", "--config", str(config), "--out", str(run_dir))  # accepted as the same job: resumed
    assert (run_dir / "evals" / "apm.json").stat().st_mtime == before
    again = tmp_path / "again"  # a fresh folder, with the first run's teachers: the same distilled set
    distill("image", "run", "--config", str(config), "--teachers", str(run_dir / "teachers"), "--out", str(again))
    rerun = json.loads((again / "config.json").read_text())
    assert rerun.pop("teacher_pool")["path"] == str(run_dir / "teachers")  # a pool from elsewhere is recorded
    assert rerun == json.loads(config.read_text())
    first = safetensors.torch.load_file(run_dir / "distilled.safetensors")
    second = safetensors.torch.load_file(again / "distilled.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_eval_command(run_dir, tmp_path):
    out = tmp_path / "eval.json"
    distill(
        "image",
        "eval",
        str(run_dir / "distilled.safetensors"),
        "--runs",
        "1",
        "--epochs",
        "10",
        "--width",
        "16",
        "--teachers",
        str(run_dir / "teachers"),
        "--out",
        str(out),
    )
    results = json.loads(out.read_text())
    assert set(results) == {"distilled", "random"}


def test_resume_with_other_config_is_refused_and_keeps_files(run_dir):
    before = (run_dir / "distilled.safetensors").read_bytes()
    proc = distill("image", "run", "--dataset", "digits", "--ipc", "3", "--out", str(run_dir), *FAST, check=False)
    one_line_error(proc, "different config")
    assert (run_dir / "distilled.safetensors").read_bytes() == before


def test_unknown_dataset_and_arch(tmp_path):
    one_line_error(
        distill("image", "run", "--dataset", "imagenot", "--out", str(tmp_path / "a"), check=False),
        "unknown dataset 'imagenot'",
    )
    one_line_error(
        distill(
            "image",
            "run",
            "--dataset",
            "digits",
            "--arch",
            "resnet99",
            "--out",
            str(tmp_path / "b"),
            *FAST,
            check=False,
        ),
        "unknown architecture 'resnet99'",
    )


def test_missing_data_folder(tmp_path):
    one_line_error(
        distill(
            "image",
            "teacher",
            "--dataset",
            "cifar10",
            "--data-root",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "t"),
            check=False,
        ),
        "cifar10 not found",
    )


def distill_digits(teachers: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """`distill image distill` on digits with the teacher pool `teachers` into `out` (its exit code unchecked)."""
    return distill(
        "image", "distill", "--teachers", str(teachers), "--dataset", "digits", *args, "--out", str(out), check=False
    )


def test_ipc_larger_than_a_class(run_dir, tmp_path):
    proc = distill_digits(run_dir / "teachers", tmp_path / "big", "--ipc", "500")
    one_line_error(proc, "IPC 500 is larger than class")


def test_wrong_image_shape(run_dir, tmp_path):
    from distillkit.image.distilled import DistilledSet

    ds = DistilledSet.load(run_dir / "distilled.safetensors")
    ds.images = torch.zeros(20, 1, 6, 6)
    bad = tmp_path / "bad.safetensors"
    ds.save(bad)
    one_line_error(
        distill("image", "eval", str(bad), "--runs", "1", "--epochs", "1", check=False), "images have shape (1, 6, 6)"
    )


def test_corrupt_files(run_dir, tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00\x01not a safetensors file")
    one_line_error(distill("image", "eval", str(bad), check=False), "not a readable distillkit safetensors file")
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "pool.json").write_text((run_dir / "teachers" / "pool.json").read_text())
    (pool / "teacher_0.safetensors").write_bytes((run_dir / "teachers" / "teacher_0.safetensors").read_bytes()[:200])
    one_line_error(distill_digits(pool, tmp_path / "x"), "not a readable distillkit safetensors file")
    state_dir = tmp_path / "damaged_state"
    state_dir.mkdir()
    (state_dir / "apm_state.pt").write_bytes(b"garbage")
    one_line_error(distill_digits(run_dir / "teachers", state_dir, "--ipc", "2"), "is damaged")
    assert (state_dir / "apm_state.pt").read_bytes() == b"garbage"  # nothing already saved is overwritten


def test_pool_for_other_data_is_refused(run_dir, tmp_path):
    proc = distill_digits(run_dir / "teachers", tmp_path / "y", "--size", "16")
    one_line_error(proc, "teacher pool was built for other data")


def test_unknown_or_bad_setting_is_refused():
    from distillkit.cli.image import parse_sets
    from distillkit.errors import UserError
    from distillkit.image.pipeline import make_config

    with pytest.raises(UserError, match=r"unknown setting apm.typo \(given 1\); known here: .*lr_img"):
        make_config("quick", parse_sets(["apm.typo=1"]))
    with pytest.raises(UserError, match=r"apm.iterations: got 'abc'"):
        make_config("quick", parse_sets(["apm.iterations=abc"]))
    with pytest.raises(UserError, match="is not key=value"):
        parse_sets(["apm.iterations"])
    assert make_config("quick", parse_sets(["apm.iterations=7"])).apm.iterations == 7
