"""The APM part of `make demo`: the quick preset on MNIST at IPC 10, written up for a person."""

from __future__ import annotations

from pathlib import Path

from distillkit.image.pipeline import make_config, results_table, run_image


def demo_section(out_dir: Path, overrides: dict | None = None) -> str:
    """Run (or resume) the quick MNIST IPC-10 job under out_dir/apm_mnist and return its markdown section."""
    run_dir = Path(out_dir) / "apm_mnist"
    cfg = make_config("quick", {"data": {"dataset": "mnist"}, "apm": {"ipc": 10}, **(overrides or {})})
    m = run_image(cfg, run_dir)
    r = m["results"]
    t = m["time_seconds"]
    gap = m["apm_minus_random"]
    return "\n".join(
        [
            f"Quick preset on MNIST, {m['ipc']} images per class ({r['apm']['n_images']} images in all), "
            f"teacher test accuracy {m['teacher']['test_acc']:.2f} %.",
            "",
            "![distilled images, one row per class](apm_mnist/grid.png)",
            "",
            results_table(m),
            "",
            f"APM minus a random real subset with the same labels and training: **{gap:+.2f} points**.",
            "",
            "![test accuracy](apm_mnist/accuracy.png)",
            "",
            f"Time: teacher {t['teachers']:.0f} s, distillation {t['distill']:.0f} s, whole run {t['total']:.0f} s; "
            f"peak memory (resident set) {m['peak_rss_mb']:.0f} MB. Run directory: `apm_mnist/` "
            "(config.json, metrics.json, distilled.safetensors).",
        ]
    )
