"""`distill image tune`: search a method's knobs on the VALIDATION split with Optuna, resumable after a kill.

Each trial builds the method's set with sampled knobs (through `Comparison.build`, so APM, DM and MTT
share one teacher pool and one expert pool across trials) and scores it with the evaluation protocol on the
validation split; the test split is never read. The study lives in `OUT/study.db` (SQLite), so a killed
search resumes with every finished trial kept; a trial's set is built in a folder named after its knobs,
so a trial cut off mid-way is re-run from its own checkpoint. The best knobs are written to
`OUT/preset.yaml`, a config file that `distill image run --config` and `distill image compare --config` take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml

from distillkit.errors import UserError
from distillkit.image.compare import CompareConfig, Comparison
from distillkit.image.evaluate import evaluate_set
from distillkit.image.mtt import Diverged
from distillkit.runs import write_json
from distillkit.settings import read_config_file
from distillkit.tuning import Space, results, search, suggest, trial_dir

__all__ = ["SPACES", "read_config_file", "suggest", "tune"]

# each method's main knobs, as a search space of distillkit.tuning
SPACES: dict[str, Space] = {
    "apm": {
        "lr_img": ("float", 0.3, 30.0, True),
        "student_epochs": ("cat", [50, 100, 250]),
        "num_checkpoints": ("int", 1, 5),
        "refresh_every": ("cat", [1, 3, 5]),
        "alpha_ce": ("float", 0.01, 1.0, True),
        "lr_net": ("float", 0.03, 3.0, True),
    },
    "dm": {"lr_img": ("float", 0.1, 100.0, True), "batch_real": ("cat", [64, 128, 256])},
    "mtt": {
        "lr_img": ("float", 1.0, 1000.0, True),
        "lr_lr": ("float", 1e-7, 1e-4, True),
        "syn_steps": ("cat", [10, 20, 30]),
    },
}


def tune(
    cfg: CompareConfig,
    method: str,
    ipc: int,
    trials: int,
    out: Path,
    teachers: Path | None = None,
    experts: Path | None = None,
    space: Space | None = None,
) -> dict:
    """Run (or resume) the search over `space` (default: the method's entry in SPACES); returns OUT/tune.json."""
    if method not in SPACES:
        raise UserError(f"cannot tune '{method}'; choose one of {', '.join(SPACES)}")
    space = space or SPACES[method]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = cfg.model_copy(update={"methods": [method], "ipcs": [ipc], "label_modes": ["soft"], "cross_archs": []})
    shared = Comparison(base, out / "shared", teachers, experts)
    teachers = shared.pool.manifest.parent
    if method == "mtt" and experts is None:
        shared.experts()  # trained once into the shared folder, then reused by every trial
        experts = shared.out / "experts"
    val = shared.data.validation_view()
    ec = shared.eval_cfg(base.eval.arch, cfg.eval.label_mode)

    def objective(trial: optuna.Trial, knobs: dict[str, Any]) -> float:
        section = getattr(base, method)
        trial_cfg = base.model_copy(update={method: section.model_copy(update=knobs)})
        comp = Comparison(trial_cfg, trial_dir(out, knobs), teachers, experts)
        try:
            ds, cost = comp.build(method, ipc)
        except Diverged as e:  # these knobs blow the images up: no score, and the search goes on
            trial.set_user_attr("diverged", str(e))
            raise optuna.TrialPruned(str(e)) from e
        r = evaluate_set(ds.images, ds.labels, ds.soft_labels, val, ec, shared.device, f"trial {trial.number}")
        trial.set_user_attr("train_fit", r["train_fit"])
        trial.set_user_attr("build_seconds", cost["seconds"])
        return r["mean"]

    study = search(out, f"{method}_ipc{ipc}", cfg.seed, trials, space, objective)
    best = study.best_trial
    preset = {method: best.params}
    (out / "preset.yaml").write_text(yaml.safe_dump(preset, sort_keys=True))
    summary = {
        "method": method,
        "ipc": ipc,
        "scored_on": "validation",
        "eval_protocol": ec.describe(),
        **results(study),
        "preset_file": str(out / "preset.yaml"),
    }
    write_json(out / "tune.json", summary)
    return summary
