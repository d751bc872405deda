"""`distill image tune`: knobs chosen on the validation split, resumable, written as a config file."""

from __future__ import annotations

import yaml

from distillkit.image import tune as tune_mod
from distillkit.image.compare import make_compare_config
from distillkit.image.tune import read_config_file, tune

TINY_NET = {"width": 16, "depth": 2}
SPACE = {"lr_img": ("float", 0.5, 20.0, True), "student_epochs": ("cat", [2, 4])}


def _cfg(apm: dict | None = None):
    return make_compare_config(
        "quick",
        {
            "data": {"dataset": "digits", "val_size": 200},
            "teacher": {"net_options": TINY_NET},
            "apm": {"iterations": 3, "num_checkpoints": 1, "refresh_every": 3, **(apm or {})},
            "eval": {"net_options": TINY_NET, "runs": 1, "epochs": 20},
            "full": {"runs": 0},
        },
    )


def test_tune_scores_on_validation_resumes_and_writes_a_preset(digits_pool, tmp_path, monkeypatch):
    scored_on = []
    real = tune_mod.evaluate_set

    def spy(x, hard, soft, data, cfg, device="cpu", desc="eval"):
        scored_on.append((data.options.get("scored_on"), len(data.y_test)))
        return real(x, hard, soft, data, cfg, device, desc)

    monkeypatch.setattr(tune_mod, "evaluate_set", spy)
    out = tmp_path / "tune"
    first = tune(_cfg(), "apm", 2, 2, out, digits_pool.manifest.parent, space=SPACE)
    assert len(first["trials"]) == 2 and scored_on == [("validation", 200)] * 2  # never the test split
    best = max(first["trials"], key=lambda t: t["val_acc"])
    assert first["best"]["params"] == best["params"] and first["best"]["val_acc"] == best["val_acc"]
    sets = sorted(out.glob("trials/*/sets/apm_ipc2/distilled.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in sets}
    again = tune(_cfg(), "apm", 2, 3, out, digits_pool.manifest.parent, space=SPACE)
    assert len(again["trials"]) == 3 and again["trials"][:2] == first["trials"]  # resumed: two kept, one new
    assert len(scored_on) == 3 and {p: p.stat().st_mtime_ns for p in sets} == stamps
    preset = read_config_file(out / "preset.yaml")
    assert preset == {"apm": again["best"]["params"]} == yaml.safe_load((out / "preset.yaml").read_text())
    assert _cfg(preset["apm"]).apm.lr_img == again["best"]["params"]["lr_img"]


def test_diverging_trials_are_pruned_and_a_search_where_all_diverge_says_so(digits_pool, tmp_path, monkeypatch):
    import pytest

    from distillkit.errors import UserError
    from distillkit.image.mtt import Diverged

    real = tune_mod.Comparison.build

    def build(self, method, ipc):  # large image steps blow this set up, as MTT's do on digits
        if self.cfg.apm.lr_img > 5.0:
            raise Diverged(f"APM diverged at iteration 0 (lr_img {self.cfg.apm.lr_img:.3g})")
        return real(self, method, ipc)

    monkeypatch.setattr(tune_mod.Comparison, "build", build)
    space = {"lr_img": ("float", 0.5, 20.0, True)}
    r = tune(_cfg(), "apm", 2, 4, tmp_path / "some", digits_pool.manifest.parent, space=space)
    assert r["trials"] and all(t["params"]["lr_img"] <= 5.0 for t in r["trials"])
    assert r["best"]["params"]["lr_img"] <= 5.0
    with pytest.raises(UserError, match="no trial of apm_ipc2 finished .* every one diverged"):
        too_large = {"lr_img": ("float", 6.0, 9.0, True)}
        tune(_cfg(), "apm", 2, 2, tmp_path / "all", digits_pool.manifest.parent, space=too_large)
