"""Answer extraction: labelled outputs (>= 200), the original cascade's false positives, Chinese cues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillkit.dialogbench.extract import extract, original_en, original_zh

DATA = Path(__file__).parent / "data"


def _load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def _score(rows: list[dict], name: str) -> tuple[float, int]:
    right = wrong = 0
    for r in rows:
        got = extract(r["output"], r["lang"], r["options"]).get(name)
        right += got == r["label"]
        wrong += got is not None and got != r["label"]
    return right / len(rows), wrong


def test_labelled_set_is_large_and_varied():
    rows = _load("dialogbench_extraction_cases.jsonl")
    assert len(rows) >= 200
    assert {r["lang"] for r in rows} == {"en", "zh"}
    assert sum(r["label"] is None for r in rows) >= 20
    assert len({(r["lang"], r["output"]) for r in rows}) == len(rows)


def test_lenient_beats_the_original_cascade_and_never_guesses_wrong():
    rows = _load("dialogbench_extraction_cases.jsonl")
    acc, wrong = _score(rows, "lenient")
    orig_acc, orig_wrong = _score(rows, "original")
    assert acc >= 0.95 and wrong == 0
    assert orig_acc < acc and orig_wrong > 0
    strict_acc, strict_wrong = _score(rows, "strict")
    assert strict_wrong == 0 and strict_acc < acc


def test_held_out_outputs_written_after_the_extractor_was_frozen():
    rows = _load("dialogbench_extraction_heldout.jsonl")
    acc, wrong = _score(rows, "lenient")
    orig_acc, orig_wrong = _score(rows, "original")
    assert wrong == 0 and orig_wrong >= 3
    assert acc >= orig_acc + 0.05


@pytest.mark.parametrize(
    "text, original, fixed",
    [
        ("This Dialogue is about travel.", "D", None),  # "is D" inside "This Dialogue"
        ("A good reply would be C.", "A", "C"),  # the article "A" read as strict A
        ("Both could work. Plan B.", "B", None),  # any sentence ending in a capital letter
        ("I would not choose A. I choose D.", "A", "D"),  # negation ignored
        ("A. x\nB. y\nC. z\nD. w", "A", None),  # the option list repeated back
        ("It could be A or B.", "B", None),  # hedging
    ],
)
def test_original_false_positives_are_fixed(text, original, fixed):
    assert original_en(text)[1] == original
    assert extract(text, "en").lenient == fixed


def test_strict_and_anchored():
    ex = extract("  B) because the user asked twice", "en")
    assert ex.strict == ex.lenient == ex.anchored == "B"
    ex = extract("Let me think.\nThe dialogue is about food.\nAnswer: C", "en")
    assert ex.strict is None and ex.anchored == "C" and ex.lenient == "C"
    ex = extract("Paris is the answer I think", "en", {"A": "London", "B": "Paris", "C": "Rome"})
    assert ex.lenient == "B" and ex.anchored is None
    assert extract("D", "en", {"A": "x", "B": "y", "C": "z"}).strict is None  # letter beyond the options


def test_chinese_cues_and_fixes():
    assert extract("答案是C。", "zh").lenient == "C"
    assert extract("B不正确，D正确", "zh").lenient == "D" and original_zh("B不正确，D正确")[1] == "B"
    assert extract("A和B都有可能", "zh").lenient is None and original_zh("A和B都有可能")[1] == "A"
    assert extract("不是A，是B", "zh").lenient == "B"
    assert extract("", "zh").lenient is None and original_zh("") == (None, None)
