"""In-context learning with DPC-5 sets from a finished bench_dilm run, scored by SmolLM2-135M.

    .venv/bin/python bench/bench_dilm_icl.py --run runs/bench_dilm --max-test 100

For each method, the set `sets/<method>/dpc5/set<r>` gives `shots` demonstrations per class; accuracy is
label-word likelihood prediction on a seeded subsample of the fine-food test reviews.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distillkit.data.text import load_text_dataset, subsample
from distillkit.lm import load_local_lm
from distillkit.runs import write_json
from distillkit.text.icl import icl_evaluate
from distillkit.text.synthetic import load_text_set


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/bench_dilm"))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--methods", default="dilm,vanilla_lm,kmeans_medoid,random")
    ap.add_argument("--dpc", type=int, default=5)
    ap.add_argument("--sets", type=int, default=2)
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--max-test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    test = subsample(load_text_dataset("fine_foods", seed=args.seed).test, args.max_test, args.seed)
    lm = load_local_lm(args.model, device="cpu", max_length=1024)
    words = ["great", "other"]
    out: dict = {"model": args.model, "label_words": words, "shots_per_class": args.shots, "test": len(test)}
    for method in args.methods.split(","):
        accs = []
        for r in range(args.sets):
            path = args.run / "sets" / method / f"dpc{args.dpc}" / f"set{r}"
            if not path.exists():
                continue
            t0 = time.perf_counter()
            res = icl_evaluate(lm, load_text_set(path), test, words, args.shots, args.seed + r, 1024)
            res["seconds"] = time.perf_counter() - t0
            accs.append(res["accuracy"])
            print(method, r, json.dumps(res), flush=True)
        out[method] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "sets": len(accs)}
    majority = 100.0 * float(np.bincount(test.labels).max() / len(test))
    out["majority_class"] = majority
    write_json(args.run / "icl.json", out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
