"""Honest references and baselines: converged teachers and full-data rows, fitted students, random draws."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from distillkit.image.evaluate import (
    EvalConfig,
    FullDataConfig,
    evaluate_full,
    evaluate_random,
    evaluate_set,
    fit_warning,
    gain,
    random_subset,
)
from distillkit.image.teacher import TeacherConfig, train_teacher
from distillkit.image.train import UntilConverged, accuracy, predict, train_net
from distillkit.nets import build_net

TINY_NET = {"width": 16, "depth": 2}


def test_until_converged_decays_then_stops_and_keeps_the_best_epoch(digits):
    net = build_net("convnet", 1, 10, 8, **TINY_NET)
    watch = UntilConverged(digits.x_val, digits.y_val, patience=2)
    lrs = []

    def on_epoch(epoch, model):
        signal = watch(epoch, model)
        lrs.append(signal)
        return signal

    train_net(net, digits.x_train, digits.y_train, epochs=200, lr=0.05, decay_after=201, on_epoch=on_epoch)
    s = watch.summary()
    assert s["converged"] and s["epochs_run"] < 200  # it stopped by itself, long before the cap
    assert lrs.count("decay") == 1 and lrs[-1] == "stop"
    assert s["val_acc"] == max(s["val_curve"]) and s["val_curve"][s["best_epoch"] - 1] == s["val_acc"]
    watch.restore(net)
    assert accuracy(net, digits.x_val, digits.y_val) == s["val_acc"]  # the best epoch's weights, not the last


def test_teacher_trains_until_validation_stalls(digits):
    _, meta = train_teacher(digits, TeacherConfig(epochs=150, patience=3, net_options=TINY_NET), 0)
    assert meta["converged"] is True and meta["epochs_run"] < 150
    assert meta["val_acc"] > 85
    _, fixed = train_teacher(digits, TeacherConfig(epochs=4, patience=None, net_options=TINY_NET), 0)
    assert fixed["converged"] is None and fixed["epochs_run"] == 4  # the published fixed schedule


def test_short_l1_schedule_underfits_soft_labels_and_is_flagged(digits, digits_pool):
    """The defect behind "soft labels lose 32 points": L1 on logits needs far more steps than CE."""
    x, y = random_subset(digits, 10, 0)
    soft = predict(digits_pool.nets[0], x)
    short = EvalConfig(net_options=TINY_NET, runs=1, epochs=60, lr=0.1)  # 100 images: one step per epoch
    soft_short = evaluate_set(x, y, soft, digits, short)
    hard_short = evaluate_set(x, y, None, digits, short.model_copy(update={"label_mode": "hard", "loss": "ce"}))
    assert hard_short["train_fit"] >= 99  # CE fits its 100 images in 60 steps ...
    assert soft_short["train_fit"] <= hard_short["train_fit"] - 20  # ... L1 on the teacher's logits does not
    assert fit_warning(soft_short) is not None and fit_warning({"train_fit": 100.0}) is None
    long = evaluate_set(x, y, soft, digits, short.model_copy(update={"epochs": 600, "lr": 1.0}))
    # more steps at a higher lr: the same soft labels fit, and the set is worth far more than it seemed
    assert long["train_fit"] > soft_short["train_fit"] + 25 and long["mean"] > soft_short["mean"] + 15


def test_random_baseline_averages_over_draws(digits):
    cfg = EvalConfig(net_options=TINY_NET, runs=1, epochs=20, lr=0.1, label_mode="hard", loss="ce", random_draws=3)
    r = evaluate_random(digits, 2, None, cfg)
    assert len(r["draw_means"]) == 3 and len(r["runs"]) == 3
    assert len(set(r["draw_means"])) > 1  # other subsets, other accuracies
    assert r["std"] == statistics.stdev(r["draw_means"]) and r["std_over"] == "draws"
    assert abs(r["mean"] - statistics.fmean(r["runs"])) < 1e-9
    # draw 0 is the subset a single-draw baseline always used; other draws pick other images
    x0, _ = random_subset(digits, 2, 0)
    x1, _ = random_subset(digits, 2, 0, draw=1)
    assert torch.equal(x0, random_subset(digits, 2, 0, draw=0)[0]) and not torch.equal(x0, x1)


def test_a_gain_is_only_called_one_beyond_twice_the_draw_spread():
    base = {"mean": 80.0, "std": 1.5}
    assert gain({"mean": 83.5}, base) == {"value": 3.5, "uncertainty": 3.0, "significant": True}
    assert gain({"mean": 82.0}, base)["significant"] is False
    assert gain({"mean": 76.0}, base)["significant"] is True  # a significant loss


def test_full_data_reference_chooses_its_epochs_on_validation(digits):
    cfg = EvalConfig(net_options=TINY_NET, label_mode="hard", loss="ce")
    r = evaluate_full(digits, cfg, FullDataConfig(runs=1, epochs=150, patience=3, lr=0.05))
    assert r["converged"] and r["epochs_run"][0] < 150 and 1 <= r["epochs_chosen"][0] <= r["epochs_run"][0]
    assert r["mean"] > 85 and "chosen on validation" in r["protocol"]
    capped = evaluate_full(digits, cfg, FullDataConfig(runs=1, epochs=2, patience=3, lr=0.05))
    assert capped["converged"] is False  # hit the cap while still improving: reports say so


def test_a_pool_folder_trained_with_other_settings_is_refused_not_reused(digits, tmp_path):
    import json

    import pytest

    from distillkit.errors import UserError
    from distillkit.image.teacher import train_pool

    cfg = TeacherConfig(epochs=2, patience=None, net_options=TINY_NET)
    manifest = train_pool(digits, cfg, tmp_path / "pool")
    before = (tmp_path / "pool" / "teacher_0.safetensors").read_bytes()
    for other in (cfg.model_copy(update={"epochs": 3}), cfg.model_copy(update={"seed": 1})):
        with pytest.raises(UserError, match="trained with other settings \\(differs in: training\\)"):
            train_pool(digits, other, tmp_path / "pool")
    # the same settings with a larger pool extend it and keep the finished teacher
    train_pool(digits, cfg.model_copy(update={"num_teachers": 2}), tmp_path / "pool")
    assert (tmp_path / "pool" / "teacher_0.safetensors").read_bytes() == before
    assert len(json.loads(manifest.read_text())["teachers"]) == 2


def test_a_run_resumed_with_another_teacher_pool_is_refused(digits, digits_pool, tmp_path):
    import shutil

    from distillkit.errors import UserError
    from distillkit.image.pipeline import make_config, run_image
    from distillkit.image.teacher import TeacherConfig, train_pool

    tiny = {"net_options": {"width": 16, "depth": 2}}
    cfg = make_config(
        "quick",
        {
            "data": {"dataset": "digits", "val_size": 200},
            "teacher": tiny,
            "apm": {"ipc": 1, "iterations": 2, "student_epochs": 2, "num_checkpoints": 1},
            "eval": {**tiny, "runs": 1, "epochs": 5, "random_draws": 1},
            "full": {"runs": 0},
            "device": "cpu",
        },
    )
    pool = tmp_path / "pool"
    shutil.copytree(digits_pool.manifest.parent, pool)
    run_image(cfg, tmp_path / "run", teachers=pool)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["teacher_pool"] == {"path": str(pool), "identity": digits_pool.identity}
    assert saved["data_sha256"] == digits.digest() == cfg.data.load(cfg.seed).digest()  # what the data held
    # the same folder, now holding other teachers (retrained in place), is caught before anything is touched
    shutil.rmtree(pool)
    train_pool(digits, TeacherConfig(epochs=2, net_options=tiny["net_options"], num_teachers=1, seed=1), pool)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    with pytest.raises(UserError, match="differs in: teacher_pool"):
        run_image(cfg, tmp_path / "run", teachers=pool)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before


def test_images_pushed_across_the_teachers_boundary_are_counted_and_flagged():
    from distillkit.image.distilled import DistilledSet
    from distillkit.image.pipeline import label_agreement, run_warnings

    labels = torch.arange(4)
    logits = torch.eye(4) * 5
    kept = DistilledSet(torch.zeros(4, 1, 8, 8), labels, logits)
    crossed = DistilledSet(torch.zeros(4, 1, 8, 8), labels, logits[[0, 2, 2, 3]])  # image 1 now reads as class 2
    assert label_agreement(kept) == 100.0 and label_agreement(crossed) == 75.0
    assert label_agreement(DistilledSet(torch.zeros(4, 1, 8, 8), labels, None)) is None
    teacher = {"converged": True, "best_epoch": 3, "epochs_run": 6}
    assert not any("decision boundary" in w for w in run_warnings({}, teacher, kept))
    (line,) = [w for w in run_warnings({}, teacher, crossed) if "decision boundary" in w]
    assert "1 of the 4 distilled images" in line
