"""DialogBench statistics: bootstrap intervals, per-letter P/R/F1, position bias, paired comparison, gold swap."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from test_dialogbench_eval import PolicyBase, PolicyChat, settings

from distillkit.dialogbench.aggregate import summarize
from distillkit.dialogbench.evaluate import evaluate, rotate
from distillkit.dialogbench.positions import gold_swap, gold_swaps
from distillkit.dialogbench.schema import load_sample
from distillkit.dialogbench.stats import (
    bootstrap_cis,
    compare_run_dirs,
    compare_runs,
    letter_scores,
    mcnemar_exact,
    position_bias,
    render_comparison,
)
from distillkit.errors import UserError


def rec(task: str, i: int, gold: str, pred: str | None, rotation: int = 0) -> dict:
    return {"task": task, "id": f"{task}-{i}", "rotation": rotation, "gold": gold, "domain": "d", "pred": {"h": pred}}


def run(task: str, n: int, right: int, start: int = 0) -> list[dict]:
    """n unrotated items of `task` (gold A), the first `right` of them answered right, the rest B."""
    return [rec(task, start + i, "A", "A" if i < right else "B") for i in range(n)]


def width(ci: list[float]) -> float:
    return ci[1] - ci[0]


def test_interval_holds_the_estimate_and_shrinks_like_the_binomial_error():
    widths = {}
    for n in (100, 400, 1600):
        ci = bootstrap_cis(run("SF", n, int(0.7 * n)), "h")["tasks"]["SF"]
        assert ci[0] < 70.0 < ci[1]
        widths[n] = width(ci)
        normal = 2 * 1.96 * 100 * math.sqrt(0.7 * 0.3 / n)  # the textbook interval for a proportion
        assert widths[n] == pytest.approx(normal, rel=0.15)
    assert widths[100] > 1.7 * widths[400] > 1.7**2 * widths[1600]  # about sqrt(4) = 2 per quadrupling


def test_overall_resamples_within_each_task_then_averages():
    records = run("SF", 400, 360) + run("IC", 400, 200)  # 90 % and 50 %: overall 70
    cis = bootstrap_cis(records, "h", seed=3)
    lo, hi = cis["overall"]
    assert lo < 70.0 < hi
    # the mean of two independent task accuracies: sd = sqrt(v1 + v2) / 2, far narrower than either task alone
    sd = 100 * math.sqrt(0.9 * 0.1 / 400 + 0.5 * 0.5 / 400) / 2
    assert hi - lo == pytest.approx(2 * 1.96 * sd, rel=0.15)
    assert cis["dimensions"]["correctness"] == cis["overall"]  # SF and IC are both correctness tasks
    alone = bootstrap_cis(run("SF", 400, 360), "h", seed=3)
    assert alone["tasks"]["SF"] == cis["tasks"]["SF"]  # a task's interval does not depend on the other tasks


def test_intervals_are_reproducible_from_the_seed_and_not_from_the_record_order():
    records = run("SF", 300, 200) + run("OD", 200, 90)
    first = bootstrap_cis(records, "h", seed=7)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert bootstrap_cis(shuffled, "h", seed=7) == first
    assert bootstrap_cis(records, "h", seed=8) != first


def test_summarize_adds_intervals_and_keeps_every_value():
    records = run("SF", 50, 40) + run("OD", 30, 12) + [rec("SF", 0, "A", "B", rotation=1)]
    records = [
        dict(r, pred=dict.fromkeys(("strict", "lenient", "anchored", "original"), r["pred"]["h"])) for r in records
    ]
    m = summarize(records, "chat", "lenient", circular=True, seed=1)
    assert m["tasks"]["SF"]["accuracy"] == 80.0 and m["tasks"]["OD"]["accuracy"] == 40.0 and m["overall"] == 60.0
    assert m["tasks"]["SF"]["n"] == 50 and m["tasks"]["SF"]["rotation_accuracy"] == pytest.approx(100 * 40 / 51, 0.01)
    for t in m["tasks"].values():
        assert t["ci95"][0] < t["accuracy"] < t["ci95"][1]
    assert m["overall_ci95"][0] < 60.0 < m["overall_ci95"][1]
    assert m["dimensions_ci95"]["safety"] == m["tasks"]["OD"]["ci95"]  # OD is the only safety task
    assert m["bootstrap"] == {"n_boot": 1000, "seed": 1, "level": 95}


def test_overall_is_the_mean_of_unrounded_task_accuracies():
    # 6 tasks at 1/3, 6 at 0: the mean is 16.666..., which rounds to 16.67 (lm-eval's group score), while the
    # mean of the rounded 33.33s is 16.665 and became 16.66
    tasks = ["SF", "IC", "KRG", "CRG", "DI", "MRG", "PRG", "RC", "ED", "NLI", "DS", "OD"]
    records = [r for k, t in enumerate(tasks) for r in run(t, 3, 1 if k < 6 else 0)]
    records = [
        dict(r, pred=dict.fromkeys(("strict", "lenient", "anchored", "original"), r["pred"]["h"])) for r in records
    ]
    m = summarize(records, "chat", "lenient", circular=True, n_boot=10)
    assert m["tasks"]["SF"]["accuracy"] == 33.33 and m["tasks"]["OD"]["accuracy"] == 0.0
    assert m["overall"] == m["overall_strict"] == m["overall_circular"] == 16.67


def test_per_letter_precision_recall_f1_on_a_known_case():
    gold = ["A", "A", "A", "B", "B", "C", "D"]
    pred = ["A", "A", "B", "B", None, "D", "B"]
    records = [rec("SF", i, g, p) for i, (g, p) in enumerate(zip(gold, pred, strict=True))]
    records.append(rec("SF", 0, "D", "D", rotation=1))  # rotated items are not counted
    s = letter_scores(records, "h")["SF"]
    assert s["A"] == {"gold": 3, "predicted": 2, "precision": 100.0, "recall": 66.67, "f1": 80.0}
    assert s["B"] == {"gold": 2, "predicted": 3, "precision": 33.33, "recall": 50.0, "f1": 40.0}  # None is a miss
    assert s["C"] == {"gold": 1, "predicted": 0, "precision": None, "recall": 0.0, "f1": None}
    assert s["D"] == {"gold": 1, "predicted": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_per_letter_scores_agree_with_scikit_learn():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    gold = list(rng.choice(list("ABCD"), 500))
    pred = [g if rng.random() < 0.5 else rng.choice(["A", "B", "C", "D", None]) for g in gold]
    s = letter_scores([rec("IC", i, g, p) for i, (g, p) in enumerate(zip(gold, pred, strict=True))], "h")["IC"]
    p, r, f, support = precision_recall_fscore_support(gold, [x or "none" for x in pred], labels=list("ABCD"))
    for k, letter in enumerate("ABCD"):
        assert s[letter]["gold"] == support[k]
        assert (s[letter]["precision"], s[letter]["recall"], s[letter]["f1"]) == pytest.approx(
            (100 * p[k], 100 * r[k], 100 * f[k]), abs=0.01
        )


def test_mcnemar_exact_on_known_tables():
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)  # two-sided binomial tail, n = 10
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 2**6)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_compare_runs_finds_a_planted_difference():
    a = run("SF", 400, 240) + run("IC", 300, 150)
    b = [dict(r) for r in a]
    for r in b[240:280]:  # B also gets 40 of A's wrong SF items right: +10 points on SF, nothing else
        r["pred"] = {"h": "A"}
    b = b[:-20] + run("OD", 5, 5)  # B lacks 20 IC items and has 5 OD items A lacks
    cmp = compare_runs(a, b, "h", "h", seed=0)
    assert (cmp["n_shared"], cmp["only_a"], cmp["only_b"]) == (680, 20, 5)
    sf, ic = cmp["tasks"]["SF"], cmp["tasks"]["IC"]
    assert (sf["accuracy_a"], sf["accuracy_b"], sf["difference"]) == (60.0, 70.0, -10.0)
    assert sf["ci95"][1] < 0 and sf["mcnemar_p"] == pytest.approx(2 / 2**40) and sf["b_only"] == 40
    assert ic["n"] == 280 and ic["difference"] == 0.0 and ic["ci95"] == [0.0, 0.0] and ic["mcnemar_p"] == 1.0
    assert cmp["overall"]["difference"] == -5.0 and cmp["overall"]["ci95"][1] < 0
    assert compare_runs(a, b, "h", "h", seed=0) == cmp
    md = render_comparison(cmp, "base", "tuned")
    assert "| SF | 400 | 60.00 | 70.00 | -10.00 |" in md and "20 items only base has, 5 items only tuned has" in md


def test_compare_runs_keeps_an_instances_rotations_together():
    one = [rec("SF", i, "A", "A" if i % 3 else "B") for i in range(200)]
    other = [rec("SF", i, "A", "A" if i % 2 else "B") for i in range(200)]

    def rotations(records):  # every instance asked 4 times with the same outcome
        return [dict(r, rotation=k) for r in records for k in range(4)]

    plain = compare_runs(one, other, "h", "h", seed=2)["tasks"]["SF"]
    circ = compare_runs(rotations(one), rotations(other), "h", "h", seed=2)["tasks"]["SF"]
    assert circ["n"] == 4 * plain["n"] and circ["difference"] == plain["difference"]
    assert circ["ci95"] == plain["ci95"]  # 4 copies of an instance carry no more information than one


def test_compare_runs_refuses_what_cannot_be_paired():
    with pytest.raises(UserError, match="share no items .A has 3, B has 2"):
        compare_runs(run("SF", 3, 1), run("IC", 2, 1), "h", "h")
    other = [dict(r, options={"A": "x", "B": "y"}) for r in run("SF", 3, 1)]
    with pytest.raises(UserError, match="3 items have the same id but different options"):
        compare_runs(run("SF", 3, 1), other, "h", "h")
    with pytest.raises(UserError, match="run B has no predictions scored by 'lenient'"):
        compare_runs(run("SF", 3, 1), run("SF", 3, 1), "h", "lenient")


def test_compare_run_folders(tmp_path):
    evaluate(settings(mode="chat"), tmp_path / "chat", progress=False, lm=PolicyChat())
    evaluate(settings(mode="base", circular=True), tmp_path / "base", progress=False, lm=PolicyBase())
    cmp = compare_run_dirs(tmp_path / "chat", tmp_path / "base")
    # both follow the same policy on the 12 unrotated items; only the circular run has the 33 rotations
    assert (cmp["n_shared"], cmp["only_a"], cmp["only_b"]) == (12, 0, 33)
    assert (cmp["headline_a"], cmp["headline_b"]) == ("lenient", "token")
    assert cmp["overall"]["difference"] == 0.0 and cmp["overall"]["mcnemar_p"] == 1.0
    with pytest.raises(UserError, match="no items.jsonl"):
        compare_run_dirs(tmp_path, tmp_path / "base")


def test_position_bias_of_a_model_that_always_answers_a():
    records = [
        rec("SF", i, gold, pick, rotation=k)
        for i in range(25)
        for k, gold in enumerate("ABCD")
        for pick in ["A" if i < 20 else gold]  # 20 instances answered A, 5 answered right in every position
    ]
    p = position_bias(records, "h")["tasks"]["SF"]
    assert p["by_gold"] == {"A": {"n": 25, "accuracy": 100.0}, **{k: {"n": 25, "accuracy": 20.0} for k in "BCD"}}
    assert p["rstd"] == pytest.approx(100 * np.std([1, 0.2, 0.2, 0.2]), abs=0.01) and p["chi2_p"] < 1e-6
    fair = position_bias([dict(r, pred={"h": r["gold"]}) for r in records], "h")
    assert fair["tasks"]["SF"]["rstd"] == 0.0 and fair["tasks"]["SF"]["chi2_p"] is None and fair["rstd"] == 0.0


def test_gold_swap_moves_only_the_gold_and_the_option_it_trades_with():
    for inst in load_sample():
        variants = gold_swaps(inst)
        assert variants[0] == (inst.options, inst.label)
        assert sorted(g for _, g in variants) == list(inst.options)  # the gold visits every letter once
        for k, (opts, gold) in enumerate(variants):
            assert gold == rotate(inst, k)[1] and opts[gold] == inst.gold_text
            assert sorted(opts.values()) == sorted(inst.options.values())
            moved = {x for x in opts if opts[x] != inst.options[x]}
            assert moved == ({gold, inst.label} if gold != inst.label else set())
        assert gold_swap(inst, len(inst.options)) == variants[0]
