"""Optuna searches on the validation split, shared by `distill image tune` and `distill text tune`.

A search is a TPE study stored in `OUT/study.db` (SQLite), so a killed search resumes with every finished trial
kept; a trial that was running when the process died is marked failed and its knobs are queued again, so it
is re-run (from its own folder's checkpoints, see `trial_dir`). A search space is data: name ->
("float", low, high, log) | ("int", low, high) | ("cat", choices).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from distillkit.errors import UserError
from distillkit.seeding import derive_seed, seed32

Space = dict[str, tuple]


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Knob values for one trial from a space written as data."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec[0] == "float":
            out[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[3])
        elif spec[0] == "int":
            out[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            out[name] = trial.suggest_categorical(name, spec[1])
    return out


def trial_dir(out: Path, knobs: dict[str, Any]) -> Path:
    """The folder of the trial with these knobs: the same knobs always work in the same folder."""
    digest = hashlib.sha256(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:12]
    return Path(out) / "trials" / digest


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials, in the order they were started."""
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def results(study: optuna.Study) -> dict[str, Any]:
    """The best trial and every finished one: knobs, validation score (`val_acc`) and what each trial recorded."""
    best = study.best_trial
    return {
        "best": {"params": best.params, "val_acc": best.value, **best.user_attrs},
        "trials": [
            {"number": t.number, "params": t.params, "val_acc": t.value, **t.user_attrs} for t in completed(study)
        ],
    }


def search(
    out: Path,
    name: str,
    seed: int,
    trials: int,
    space: Space,
    score: Callable[[optuna.Trial, dict[str, Any]], float],
) -> optuna.Study:
    """Run (or resume) the study `name` in OUT/study.db until `trials` trials have finished; higher is better.
    A trial whose knobs diverged is pruned (not scored); a study where none finished is one line.

    `score(trial, knobs)` returns a trial's validation score for the knobs suggested from `space`.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{Path(out) / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize")
    searched = json.loads(json.dumps(space))  # as stored: tuples become lists
    if study.user_attrs.setdefault("space", searched) != searched:
        raise UserError(
            f"{out} holds a search over other knobs or ranges ({study.user_attrs['space']}); "
            "resume it with the same settings, or pass another --out"
        )
    study.set_user_attr("space", searched)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # cut off by a kill: run its knobs again
        study.enqueue_trial(t.params)
    # The sampler's seed counts the trials so far: a resumed search draws new knobs, not the first trials' again.
    study.sampler = optuna.samplers.TPESampler(seed=seed32(derive_seed(seed, "tpe", len(study.trials))))
    missing = trials - len(completed(study))
    if missing > 0:
        study.optimize(lambda trial: score(trial, suggest(trial, space)), n_trials=missing)
    if not completed(study):
        raise UserError(
            f"no trial of {name} finished ({len(study.trials)} started, every one diverged or failed); "
            "narrow the search space towards smaller learning rates"
        )
    return study
