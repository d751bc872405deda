"""`distill text tune`: stage-2 knobs scored on validation only, a killed search resumed, the preset written."""

import json

import pytest
import torch
import yaml
from test_dilm_pipeline import TINY

from distillkit.cli.common import run_app
from distillkit.cli.text import app
from distillkit.errors import UserError
from distillkit.text import pipeline
from distillkit.text.api import build_config, resolve_text_config
from distillkit.text.pipeline import load_splits
from distillkit.text.tune import effective, nested, tune, with_knobs
from distillkit.tuning import trial_dir

SPACE = {
    "gm.lr": ("float", 1e-6, 1e-3, True),
    "gm.outer_loops": ("cat", [1]),
    "gm.class_token_lr_mult": ("float", 1.0, 10.0, True),
}


def tune_config():
    """The pipeline tests' tiny run with fewer and shorter generated texts (sampling is most of a trial's time)."""
    fewer = ["max_length=12", "gm.inner_loops=1", "gm.syn_batch=2"]
    return build_config("fine_foods", "quick", dpcs=[2, 3], seed=0, overrides=[*TINY, *fewer])


@pytest.fixture(autouse=True)
def one_thread():
    """Sampling the tiny generator (a sort over 49k logits per token) runs several times faster on one thread when
    the machine is shared; the thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Killed(BaseException):
    """Ends the process's work mid-trial the way a kill does: the trial stays RUNNING in the study."""


def test_trials_without_stage2_share_one_folder(tmp_path):
    a = {"gm.lr": 1e-5, "gm.outer_loops": 0, "gm.class_token_lr_mult": 3.0}
    b = {"gm.lr": 1e-4, "gm.outer_loops": 0, "gm.class_token_lr_mult": 50.0}
    assert trial_dir(tmp_path, effective(a)) == trial_dir(tmp_path, effective(b))  # the same generator: scored once
    assert trial_dir(tmp_path, effective(a | {"gm.outer_loops": 1})) != trial_dir(tmp_path, effective(b))
    assert nested(a) == {"gm": {"lr": 1e-5, "outer_loops": 0, "class_token_lr_mult": 3.0}}


def _trial_records(summary):
    return [(t["number"], t["params"], t["val_acc"]) for t in summary["trials"]]


def test_tune_scores_on_validation_resumes_after_a_kill_and_writes_a_preset(tmp_path, monkeypatch):
    cfg = tune_config()
    splits = load_splits(cfg)
    scored, kill = [], []
    real = pipeline.evaluate_set

    def spy(learner, small, data, ft, seeds, validation=None):
        scored.append(list(data.texts))
        if kill:
            raise Killed
        return real(learner, small, data, ft, seeds, validation)

    monkeypatch.setattr(pipeline, "evaluate_set", spy)
    out = tmp_path / "tune"
    first = tune(cfg, 2, 2, out, space=SPACE)
    assert len(first["trials"]) == 2 and len(scored) == 2  # one set x one run per trial (val_sets, val_runs)
    assert all(texts == splits.validation.texts for texts in scored)  # every score is on validation, never test
    assert first["scored_on"] == "validation" and first["validation_size"] == len(splits.validation) == 16
    best = max(first["trials"], key=lambda t: t["val_acc"])
    assert (first["best"]["params"], first["best"]["val_acc"]) == (best["params"], best["val_acc"])
    for t in first["trials"]:  # a trial's score is the mean of its runs, kept in its own folder
        kept = json.loads((trial_dir(out, effective(t["params"])) / "tune_score.json").read_text())
        assert kept["mean"] == t["val_acc"] and kept["runs"] == 1
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/tune_score.json")}

    kill.append(True)  # the third trial dies while it is being scored
    with pytest.raises(Killed):
        tune(cfg, 2, 3, out, space=SPACE)
    kill.clear()
    n_before = len(scored)
    again = tune(cfg, 2, 3, out, space=SPACE)
    assert len(again["trials"]) == 3 and _trial_records(again)[:2] == _trial_records(first)  # finished ones kept
    assert len(scored) == n_before + 1  # only the killed trial is scored again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    import optuna

    study = optuna.load_study(study_name="dilm_dpc2", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # the killed trial's knobs ran again
    assert study.trials[3].params == study.trials[2].params

    chosen = effective(again["best"]["params"])
    preset = resolve_text_config(None, out / "preset.yaml")
    assert preset == with_knobs(cfg, chosen)  # the run's config with the chosen knobs, nothing else changed
    assert preset.gm.model_dump() == cfg.gm.model_dump() | nested(chosen)["gm"]
    trial_cfg = json.loads((trial_dir(out, chosen) / "config.json").read_text())
    assert trial_cfg["gm"] == preset.gm.model_dump()  # the preset reproduces the best trial's stage 2
    assert yaml.safe_load((out / "preset.yaml").read_text())["device"] == "auto"
    with pytest.raises(UserError, match="holds a search over other knobs or ranges"):
        tune(cfg, 2, 4, out, space={**SPACE, "gm.outer_loops": ("cat", [1, 2])})


def test_cli_tune_writes_a_preset_that_run_takes(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tune_config().model_dump(mode="json")))
    out = tmp_path / "tune"
    argv = ["tune", "--config", str(config), "--set", "gm.outer_loops=1", "--dpc", "2", "--trials", "1", "--out"]
    run_app(app, [*argv, str(out), "--quiet"])
    assert "best of 1 trials: validation" in capsys.readouterr().out
    summary = json.loads((out / "tune.json").read_text())
    assert summary["space"]["gm.outer_loops"] == ["cat", [0, 1, 2]]  # none, the config's and twice its loops
    run_app(app, ["run", "--config", str(out / "preset.yaml"), "--out", str(tmp_path / "r"), "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    best = effective(summary["best"]["params"])
    assert all(printed["gm"][key.split(".")[1]] == value for key, value in best.items())
    assert printed["max_length"] == 12 and printed["generator"] == "tiny-gpt2"
