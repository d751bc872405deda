"""Build the DiLM generators the demo ships: stages 1 and 2 of the `demo` preset, saved as LoRA adapters.

Trains the `demo` preset's generators (SmolLM2-135M-Instruct with LoRA, fine-food reviews) in a run directory,
then copies generator_vanilla/ and generator_dilm/ (adapter weights and the added tokens' rows, a few MB) into
distillkit/text/demo_generators/ with a provenance.json: the command, commit, versions, settings, stage-1 loss
curve, stage-2 history and the validation scores that chose the stage-2 checkpoint.

    python bench/build_demo_generators.py              # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

DEST = Path(__file__).resolve().parents[1] / "src" / "distillkit" / "text" / "demo_generators"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fine_foods")
    p.add_argument("--run-dir", type=Path, default=Path("runs/build_demo_generators"))
    p.add_argument("--dest", type=Path, default=DEST)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import peft

    from distillkit.runs import provenance, read_json, write_json
    from distillkit.text.config import preset_config
    from distillkit.text.pipeline import DiLMRun

    cfg = preset_config("demo", args.dataset).model_copy(update={"generators_from": None})
    start = time.perf_counter()
    run = DiLMRun(cfg, args.run_dir, progress=True)
    run.generators()
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in ("generator_vanilla", "generator_dilm"):
        shutil.rmtree(args.dest / name, ignore_errors=True)
        shutil.copytree(args.run_dir / name, args.dest / name, ignore=shutil.ignore_patterns("README.md"))
    ckpt = args.run_dir / "ckpt"
    made = provenance("cpu", time.perf_counter() - start)
    write_json(
        args.dest / "provenance.json",
        {
            "built_by": "python " + " ".join(sys.argv),
            "commit": made["git_commit"],
            "created": made["finished_at"],
            "versions": {"torch": made["torch"], "transformers": made["transformers"], "peft": peft.__version__},
            "threads": made["cpu_threads"],
            "seconds": made["wall_seconds"],
            "config": cfg.model_dump(),
            "stage1_losses": read_json(ckpt / "stage1_losses.json"),
            "stage2_history": read_json(ckpt / "stage2_history.json"),
            "stage2_validation": read_json(ckpt / "validation.json"),
        },
    )
    print(f"wrote {args.dest}")


if __name__ == "__main__":
    main()
