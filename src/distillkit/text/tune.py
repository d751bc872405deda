"""`distill text tune`: choose DiLM stage 2's knobs on the VALIDATION split with Optuna, resumable after a kill.

Stage 1 is trained once, in `OUT/shared` (a DiLM run directory); stage 1 is not searched. Every trial starts
stage 2 from that generator with sampled knobs (the generator's learning rate, the number of outer loops, the
class tokens' learning-rate multiplier) in a folder named after the knobs that matter (with 0 outer loops,
only that), and is scored by `DiLMRun.validation_accuracies`: learners fine-tuned on `val_sets` sets generated
at the tuned DPC (oversampled, K-means-medoid selected, as a run builds its sets), `val_runs` each, accuracy on
the validation split. The test split is never scored. The study is `distillkit.tuning.search` (OUT/study.db),
so a killed search resumes with its finished trials kept, and a trial cut off mid-way restarts from its own
stage-2 checkpoint. The best trial's settings are written to `OUT/preset.yaml`: the whole run config with the
chosen knobs, which `distill text run --config` takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from distillkit.errors import UserError
from distillkit.runs import write_json
from distillkit.settings import merge_settings
from distillkit.text.config import DiLMConfig, config_from_dict
from distillkit.text.pipeline import DiLMRun
from distillkit.tuning import Space, results, search, trial_dir

STEPS = "gm.outer_loops"


def default_space(cfg: DiLMConfig) -> Space:
    """The knobs searched: generator lr (the paper's 3e-7 to the old CPU benches' 1e-4), stage-2 length (none,
    half, the config's and twice its outer loops; 0 keeps the stage-1 generator) and the class-token multiplier."""
    loops = max(1, cfg.gm.outer_loops)
    return {
        "gm.lr": ("float", 3e-7, 1e-4, True),
        STEPS: ("cat", sorted({0, max(1, loops // 2), loops, 2 * loops})),
        "gm.class_token_lr_mult": ("float", 1.0, 100.0, True),
    }


def nested(knobs: dict[str, Any]) -> dict[str, Any]:
    """Dotted knob names as nested settings: {"gm.lr": 1e-5} -> {"gm": {"lr": 1e-5}}."""
    out: dict[str, Any] = {}
    for key, value in knobs.items():
        *sections, last = key.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[last] = value
    return out


def dotted(cfg: DiLMConfig, key: str) -> Any:
    """The value of a dotted setting, e.g. dotted(cfg, "gm.lr")."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def effective(knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs that change the result: with no stage-2 steps, only that (the lr and multiplier do nothing)."""
    return {STEPS: 0} if knobs.get(STEPS) == 0 else dict(knobs)


def with_knobs(cfg: DiLMConfig, knobs: dict[str, Any]) -> DiLMConfig:
    """`cfg` with the knobs set (validated)."""
    return config_from_dict(merge_settings(cfg.model_dump(), nested(knobs))).check()


def trial_config(base: DiLMConfig, knobs: dict[str, Any], dpc: int) -> DiLMConfig:
    """A trial's run: stage 2 with the knobs, its last generator kept (the steps knob is the checkpoint choice),
    validation sets at the tuned DPC, nothing else built."""
    cfg = with_knobs(base, effective(knobs))
    return cfg.model_copy(
        update={"methods": ["dilm"], "dpcs": [dpc], "checkpoint": "last", "val_dpc": dpc, "icl": None}
    )


def preset_text(cfg: DiLMConfig, knobs: dict[str, Any], score: float, dpc: int) -> str:
    """The chosen settings as a config file: the whole run config, the tuned knobs named in its header."""
    data = cfg.model_dump(mode="json")
    data["device"] = "auto"  # the machine that runs it decides, as in a preset
    chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(knobs.items()))
    header = (
        f"# distill text tune: {chosen}; validation accuracy {score:.2f} % at DPC {dpc}.\n"
        "# Use with: distill text run --config THIS_FILE --out RUN_DIR\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def tune(
    cfg: DiLMConfig,
    dpc: int,
    trials: int,
    out: Path,
    space: Space | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the search over `space` (default: `default_space(cfg)`); returns OUT/tune.json."""
    if dpc < 1 or trials < 1:
        raise UserError(f"--dpc and --trials must be at least 1 (got {dpc} and {trials})")
    space = space or default_space(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shared = DiLMRun(trial_config(cfg, {}, dpc), out / "shared", progress)
    shared.vanilla_generator()  # stage 1, once for every trial
    shared.real_embeddings()
    validation = shared.data.validation

    def objective(trial: optuna.Trial, knobs: dict[str, Any]) -> float:
        run = DiLMRun(trial_config(cfg, knobs, dpc), trial_dir(out, effective(knobs)), progress, shared.out)

        def score() -> dict[str, Any]:
            accs = run.validation_accuracies(run.dilm_generator())
            return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "runs": len(accs)}

        result = run.run_dir.cached("tune_score.json", score, timed=True)
        run.run_dir.close()
        trial.set_user_attr("val_std", result["std"])
        trial.set_user_attr("val_runs", result["runs"])
        trial.set_user_attr("seconds", result["seconds"])
        return result["mean"]

    study = search(out, f"dilm_dpc{dpc}", cfg.seed, trials, space, objective)
    best = study.best_trial
    chosen = with_knobs(cfg, effective(best.params))
    (out / "preset.yaml").write_text(preset_text(chosen, effective(best.params), best.value, dpc), encoding="utf-8")
    summary = {
        "dpc": dpc,
        "scored_on": "validation",
        "validation_size": len(validation),
        "score": f"mean validation accuracy of {cfg.val_sets} generated sets x {cfg.val_runs} runs",
        "space": {k: list(v) for k, v in space.items()},
        "base": {k: dotted(cfg, k) for k in space},
        **results(study),
        "preset_file": str(out / "preset.yaml"),
    }
    write_json(out / "tune.json", summary)
    return summary
