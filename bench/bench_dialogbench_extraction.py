"""Answer-extraction accuracy on the labelled outputs: our extractors vs the original DialogBench cascade.

.venv/bin/python bench/bench_dialogbench_extraction.py --out bench/results/dialogbench_extraction.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distillkit.dialogbench.extract import EXTRACTORS, extract

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SETS = {"cases": "dialogbench_extraction_cases.jsonl", "heldout": "dialogbench_extraction_heldout.jsonl"}


def score(path: Path) -> dict:
    """Per extractor: accuracy, and how each kind of error splits (a missing answer counts right only for None)."""
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    out = {
        "file": path.name,
        "n": len(rows),
        "n_en": sum(r["lang"] == "en" for r in rows),
        "n_no_answer": sum(r["label"] is None for r in rows),
    }
    for name in EXTRACTORS:
        pairs = [(extract(r["output"], r["lang"], r["options"]).get(name), r["label"]) for r in rows]
        out[name] = {
            "accuracy": round(100 * sum(g == gold for g, gold in pairs) / len(rows), 1),
            "wrong_letter": sum(g is not None and g != gold for g, gold in pairs),
            "other_letter": sum(g is not None and gold is not None and g != gold for g, gold in pairs),
            "letter_for_no_answer": sum(g is not None and gold is None for g, gold in pairs),
            "missed": sum(g is None and gold is not None for g, gold in pairs),
            "no_answer": sum(g is None for g, _ in pairs),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the JSON summary here as well")
    args = ap.parse_args()
    res = {key: score(DATA / name) for key, name in SETS.items()}
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
