"""The APM part of `make demo`: the quick preset on scikit-learn digits, written up for a person.

Digits (8x8) is where a 2-core CPU affords what the protocol needs: a teacher and a full-data reference
trained until validation accuracy stops improving, students that fit their training set (1000 steps),
and a random baseline averaged over three draws. `make demo` shows IPC 10 with the teacher's soft labels,
where APM's gain over random subsets was measured beyond the draws' noise (docs/benchmarks.md; one demo
run, with its own teacher, may land within it); `make demo-full` (`distill demo --full`) adds hard labels
and IPC 1, where APM loses. MNIST and the longer schedules stay one command away
(`distill image run --dataset mnist`).
"""

from __future__ import annotations

from pathlib import Path

from distillkit.image.pipeline import make_config, results_table, run_image
from distillkit.settings import merge_settings

DEMO_IPCS = (10,)
FULL_IPCS = (1, 10)


def _gain_line(name: str, g: dict) -> str:
    verdict = ("a gain" if g["value"] > 0 else "a loss") if g["significant"] else "within the noise of the draws"
    return f"- {name}: **{g['value']:+.2f} ± {g['uncertainty']:.2f} points** ({verdict})"


def demo_section(out_dir: Path, overrides: dict | None = None, full: bool = False) -> str:
    """Run (or resume) the quick digits jobs under out_dir/apm_digits_ipcK and return their markdown section."""
    out_dir = Path(out_dir)
    parts: list[str] = []
    pool = None
    base = {"data": {"dataset": "digits"}, "hard_label_eval": full}  # hard-label rows cost ten minutes' budget
    for ipc in FULL_IPCS if full else DEMO_IPCS:
        name = f"apm_digits_ipc{ipc}"
        settings = merge_settings(base, overrides or {})
        settings = merge_settings(settings, {"apm": {"ipc": ipc}, **({"full": {"runs": 0}} if pool else {})})
        cfg = make_config("quick", settings)
        m = run_image(cfg, out_dir / name, pool)
        if pool is None:
            full = m["results"].get("full")
            t = m["teacher"]
            parts += [
                f"scikit-learn digits (8x8, 10 classes), quick preset. Teacher: {t['test_acc']:.2f} % test accuracy, "
                f"best validation epoch {t['best_epoch']} of {t['epochs_run']} (trained until validation accuracy "
                "stopped improving)."
                + (
                    f" Full-data reference (the same network on all training images, epochs chosen on validation): "
                    f"{full['mean']:.2f} ± {full['std']:.2f} %."
                    if full
                    else ""
                ),
                "",
            ]
            pool = out_dir / name / "teachers"
        t = m["time_seconds"]
        parts += [
            f"### IPC {ipc} ({m['results']['apm']['n_images']} images)",
            "",
            f"![distilled images, one row per class]({name}/grid.png)",
            "",
            results_table(m),
            "",
            "APM minus a random real subset under the same labels (± twice the spread over random draws):",
            *[
                _gain_line(label, m["gain_over_random"][key])
                for label, key in (("teacher soft labels (L1)", "apm"), ("hard labels (CE)", "apm_hard"))
                if key in m["gain_over_random"]
            ],
            "",
            f"APM's proxy students agreed with the teacher on {m['proxy_fit']:.1f} % of the images they were "
            "trained on (the adversarial step needs trained students).",
            "",
            *[line for w in m["warnings"] for line in (f"> warning: {w}", "")],  # one quoted block each
            f"![test accuracy]({name}/accuracy.png)",
            "",
            f"Time: distillation {t['distill']:.0f} s, whole run {t['total']:.0f} s; peak memory (resident set) "
            f"{m['peak_rss_mb']:.0f} MB. Run directory: `{name}/` (config.json, metrics.json, "
            "distilled.safetensors).",
            "",
        ]
    return "\n".join(parts)
