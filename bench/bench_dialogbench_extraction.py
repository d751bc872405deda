"""Answer-extraction accuracy on the labelled outputs: our extractors vs the original DialogBench cascade.

.venv/bin/python bench/bench_dialogbench_extraction.py
"""

from __future__ import annotations

import json
from pathlib import Path

from distillkit.dialogbench.extract import EXTRACTORS, extract

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def score(path: Path) -> dict:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    out = {
        "file": path.name,
        "n": len(rows),
        "n_en": sum(r["lang"] == "en" for r in rows),
        "n_no_answer": sum(r["label"] is None for r in rows),
    }
    for name in EXTRACTORS:
        got = [extract(r["output"], r["lang"], r["options"]).get(name) for r in rows]
        right = sum(g == r["label"] for g, r in zip(got, rows, strict=True))
        wrong = sum(g is not None and g != r["label"] for g, r in zip(got, rows, strict=True))
        out[name] = {
            "accuracy": round(100 * right / len(rows), 1),
            "wrong_letter": wrong,
            "no_answer": sum(g is None for g in got),
        }
    return out


def main() -> None:
    for f in ("dialogbench_extraction_cases.jsonl", "dialogbench_extraction_heldout.jsonl"):
        print(json.dumps(score(DATA / f)))


if __name__ == "__main__":
    main()
