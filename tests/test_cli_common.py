"""The shared CLI layer: interrupts, where a setting comes from, one line per bad setting, the item log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from distillkit.cli.common import INTERRUPTED, option_groups, run_app
from distillkit.errors import UserError, validation_message

MAIN = "from distillkit.cli.distill import main; main()"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_with_one_line_and_its_exit_code(tmp_path, signum, code):
    out = tmp_path / "pool"
    args = ["image", "teacher", "--dataset", "digits", "--epochs", "500", "--width", "16", "--out", str(out)]
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not out.is_dir() and proc.poll() is None and time.monotonic() < deadline:  # out appears once it runs
        time.sleep(0.1)
    time.sleep(1.0)  # now inside data loading or training
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr.splitlines() == [INTERRUPTED]
    assert "Traceback" not in stdout + stderr


def test_an_interrupted_generation_with_requests_in_flight_ends_in_one_line_and_resumes(tmp_path):
    from distillkit.dialogbench.generate.replay import ReplayServer

    srv = ReplayServer(delay=0.05)
    out = tmp_path / "out"
    args = ["generate", "--llm", "m", "--base-url", srv.url, "--tasks", "SF", "--per-task", "20", "--out", str(out)]
    cmd = [sys.executable, "-c", "from distillkit.cli.dialogbench import main; main()", *args, "--concurrency", "2"]
    env = {**os.environ, "DISTILLKIT_CACHE": str(tmp_path / "cache"), "DISTILLKIT_PROGRESS": "0"}
    log = out / "generated.jsonl"
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143 and stderr.splitlines() == [INTERRUPTED], stderr
        kept = log.read_text().splitlines()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert log.read_text().splitlines()[: len(kept)] == kept and "accepted 20 of 20 planned" in done.stdout
    finally:
        srv.stop()


def _capture_run(monkeypatch, tmp_path: Path, *args: str):
    """`distill image run ARGS` up to the resolved config (nothing is trained)."""
    import distillkit.image.pipeline as pipeline
    from distillkit.cli.image import app

    seen = {}
    monkeypatch.setattr(pipeline, "run_image", lambda cfg, out, teachers: seen.setdefault("cfg", cfg))
    monkeypatch.setattr(pipeline, "results_table", lambda metrics: "")
    run_app(app, ["run", "--out", str(tmp_path / "run"), *args])
    return seen["cfg"]


def test_set_is_not_overridden_by_flag_defaults(monkeypatch, tmp_path):
    cfg = _capture_run(monkeypatch, tmp_path, "--set", "apm.ipc=3", "--set", "seed=7", "--set", "device=cpu")
    assert (cfg.apm.ipc, cfg.seed, cfg.device) == (3, 7, "cpu")
    cfg = _capture_run(monkeypatch, tmp_path)  # the documented defaults when nothing is typed
    assert (cfg.apm.ipc, cfg.seed, cfg.device, cfg.data.dataset) == (10, 0, "auto", "mnist")


def test_preset_then_config_then_set_then_typed_flags(monkeypatch, tmp_path):
    config = tmp_path / "preset.yaml"
    config.write_text("apm: {ipc: 5, iterations: 9}\ndata: {dataset: digits}\nseed: 4\n")
    cfg = _capture_run(monkeypatch, tmp_path, "--config", str(config))
    assert (cfg.apm.ipc, cfg.apm.iterations, cfg.data.dataset, cfg.seed) == (5, 9, "digits", 4)
    cfg = _capture_run(monkeypatch, tmp_path, "--config", str(config), "--set", "apm.ipc=6")
    assert (cfg.apm.ipc, cfg.apm.iterations) == (6, 9)
    cfg = _capture_run(monkeypatch, tmp_path, "--config", str(config), "--set", "apm.ipc=6", "--iterations", "2")
    assert (cfg.apm.ipc, cfg.apm.iterations, cfg.apm.student_epochs) == (6, 2, 300)  # 300: the quick preset's
    cfg = _capture_run(monkeypatch, tmp_path, "--config", str(config), "--ipc", "2", "--seed", "1")
    assert (cfg.apm.ipc, cfg.seed, cfg.data.dataset) == (2, 1, "digits")


def test_a_typed_flag_and_a_set_that_disagree_are_refused(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _capture_run(monkeypatch, tmp_path, "--ipc", "4", "--set", "apm.ipc=3")
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --ipc 4 and --set apm.ipc=3 disagree; pass only one of them"
    assert _capture_run(monkeypatch, tmp_path, "--ipc", "3", "--set", "apm.ipc=3").apm.ipc == 3  # agreeing is fine


def _window(
    start: int = typer.Option(0, min=0, help="First item."), stop: int = typer.Option(10, help="Item after the last.")
) -> range:
    return range(start, stop)


def test_an_option_group_stands_in_its_parameters_place_and_reaches_the_command_as_one_value():
    app = typer.Typer()
    seen = {}

    @app.command()
    @option_groups(window=_window)
    def show(
        *, name: str = typer.Argument(..., help="A name."), window: range, loud: bool = typer.Option(False, "--loud")
    ) -> None:
        seen.update(name=name, window=window, loud=loud)

    run_app(app, ["x", "--stop", "4", "--loud"])
    assert seen == {"name": "x", "window": range(0, 4), "loud": True}
    listed = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert [listed.index(flag) for flag in ("--start", "--stop", "--loud")] == sorted(
        listed.index(flag) for flag in ("--start", "--stop", "--loud")
    )
    assert "First item." in listed and "[default: 10]" in listed
    with pytest.raises(SystemExit):
        run_app(app, ["x", "--start", "-1"])  # the group's own checks (min=0) still apply
    with pytest.raises(TypeError, match="no parameter span"):
        option_groups(span=_window)(show.__wrapped__)


def _error(model, data) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data)
    return e.value


def test_validation_message_names_key_value_and_what_is_allowed():
    from distillkit.image.apm import APMConfig
    from distillkit.image.pipeline import ImageRunConfig

    msg = validation_message(_error(ImageRunConfig, {"apm": {"ipc": "abc"}}), ImageRunConfig)
    assert msg == "apm.ipc: got 'abc', should be a valid integer, unable to parse string as an integer; " + (
        "fix the --set or --config value"
    )
    msg = validation_message(_error(ImageRunConfig, {"apm": {"lr_img": 0}}), ImageRunConfig)
    assert msg.startswith("apm.lr_img: got 0, should be greater than 0")
    msg = validation_message(_error(APMConfig, {"discrepancy": "l3"}), APMConfig, {"discrepancy": "--discrepancy"})
    assert msg.startswith("--discrepancy: got 'l3', should be 'l1', 'mse' or 'kl'")
    msg = validation_message(_error(ImageRunConfig, {"apm": {"foo": 1}}), ImageRunConfig)
    assert msg.startswith("unknown setting apm.foo (given 1); known here: alpha_ce, batch_syn,")
    msg = validation_message(_error(APMConfig, {"ipc": 0, "iterations": 0, "lr_img": -1}))
    assert msg.endswith("(and 2 more problems)") and "errors.pydantic.dev" not in msg and "\n" not in msg


def test_config_file_errors_are_one_line(tmp_path):
    from distillkit.text.config import read_config_file

    bad = tmp_path / "config.json"
    bad.write_text('{"seed": "x"}')
    with pytest.raises(UserError, match="seed: got 'x', should be a valid integer"):
        read_config_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match=r"must hold a mapping of settings \(a JSON object\)"):
        read_config_file(bad)


def test_item_log_repairs_a_last_line_without_newline(tmp_path):
    from distillkit.dialogbench.itemlog import ItemLog

    path = tmp_path / "items.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "b", "v": 2}')  # killed after the record, before its newline
    log = ItemLog(path)
    assert set(log.records) == {"a", "b"}
    log.write({"key": "c", "v": 3})
    log.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b", "c"]
    path.write_text('{"key": "a"}\n[1]\n{"key": "b", "v"')  # a stray value and a cut line: both dropped
    log = ItemLog(path)
    log.close()
    assert set(log.records) == {"a"} and path.read_text() == '{"key": "a"}\n'
