"""End to end with tiny models: run directory, resume to the same result, CLI, one-line errors."""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from distillkit.cli.common import run_app
from distillkit.cli.text import app
from distillkit.data.text import load_text_dataset, subsample
from distillkit.errors import UserError
from distillkit.seeding import derive_seed, seed32
from distillkit.text.api import build_config, tiny_gm_config, tiny_overrides
from distillkit.text.coreset import SelectionEncoder, select_per_class
from distillkit.text.evaluate import evaluate_set
from distillkit.text.generator import Generator
from distillkit.text.gm import GradientMatcher
from distillkit.text.learner import Learner
from distillkit.text.pipeline import load_splits, run_dilm
from distillkit.text.stage1 import Stage1Config, train_stage1
from distillkit.text.synthetic import generate_pool, load_text_set

TINY = [
    *tiny_overrides(
        stage1_steps=3,
        outer_loops=2,
        full_runs=2,
        methods=["dilm", "vanilla_lm", "kmeans_medoid", "greedy_k_center", "herding", "random", "full"],
    ),
    "stage1.lr=0.001",
    "gm.lr=0.0001",
    "full_finetune.select_every=1",
    'checkpoint="best"',
    "share_pool=false",
    "validate_every=1",
    "val_dpc=2",
    "val_sets=1",
    "val_runs=1",
]


def tiny_config(**kw):
    return build_config("fine_foods", "quick", dpcs=[2, 3], seed=0, overrides=TINY, **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dilm") / "run"
    return out, run_dilm(tiny_config(), out, progress=False)


def test_run_directory_has_everything(run):
    out, metrics = run
    assert json.loads((out / "config.json").read_text())["generator"] == "tiny-gpt2"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (out / "accuracy_vs_dpc.png").stat().st_size > 1000
    res = metrics["learners"]["tiny-bert"]
    assert set(res) == {"dilm", "vanilla_lm", "kmeans_medoid", "greedy_k_center", "herding", "random", "full"}
    for method in ("dilm", "random", "kmeans_medoid"):
        assert res[method]["2"]["n"] == 2 and res[method]["3"]["sets"] == 2
    assert res["herding"]["2"]["sets"] == 1 and res["herding"]["2"]["n"] == 2  # one set, more runs
    assert res["full"]["all"]["n"] == 2
    for r in res["dilm"]["3"]["runs"]:
        assert 0 <= r["accuracy"] <= 100
    # the distilled set: JSONL, HF datasets folder, provenance
    d = out / "sets" / "dilm" / "dpc3" / "set0"
    rows = [json.loads(x) for x in (d / "texts.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and [r["label"] for r in rows] == [0, 0, 0, 1, 1, 1] and all(r["review"] for r in rows)
    import datasets

    hf = datasets.load_from_disk(str(d / "hf"))
    assert hf.num_rows == 6 and hf.features["label"].names == ["great", "other"]
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["method"] == "dilm" and prov["oversample"] == 2 and prov["selection"] == "kmeans_medoid"
    assert set(metrics["generator_validation"]["scores"]) == {"step0", "step2", "step4"}
    assert (out / "generator_dilm" / "distillkit_generator.json").exists()


CORESETS = ("kmeans_medoid", "greedy_k_center", "herding", "random")


def _rows(d):
    return [json.loads(x) for x in (d / "texts.jsonl").read_text().splitlines()]


def test_coreset_sets_are_the_selected_training_rows(run):
    out, _ = run
    train = load_splits(tiny_config()).train
    emb = np.load(out / "ckpt" / "real_emb.npy")
    np.testing.assert_allclose(emb, SelectionEncoder("tiny-bert", 20).embed(train.texts), rtol=1e-4, atol=1e-5)
    for method in CORESETS:
        for dpc in (2, 3):
            for r in range(1 if method == "herding" else 2):
                d = out / "sets" / method / f"dpc{dpc}" / f"set{r}"
                idx = np.asarray(json.loads((d / "provenance.json").read_text())["train_indices"])
                expect = select_per_class(method, emb, train.labels, dpc, derive_seed(0, "coreset_set", r))
                assert idx.tolist() == expect.tolist(), (method, dpc, r)
                assert len(set(idx.tolist())) == 2 * dpc
                rows = _rows(d)
                assert [x["review"] for x in rows] == [train.texts[i][0] for i in idx]
                assert [x["label"] for x in rows] == train.labels[idx].tolist() == [0] * dpc + [1] * dpc
                assert [x["label_name"] for x in rows] == ["great"] * dpc + ["other"] * dpc
    # the seed differs between sets: two random draws of 3 of 31 + 3 of 17 rows are not the same
    pick = [json.loads((out / f"sets/random/dpc3/set{r}/provenance.json").read_text()) for r in (0, 1)]
    assert pick[0]["train_indices"] != pick[1]["train_indices"]


def test_generated_sets_are_kmeans_medoids_of_a_reproducible_pool(run):
    out, metrics = run
    train = load_splits(tiny_config()).train
    val = metrics["generator_validation"]
    best = max(val["scores"], key=lambda k: (val["scores"][k]["validation_accuracy"], -val["scores"][k]["step"]))
    assert val["best"] == best  # the earliest of the best validation scores
    dilm = Generator.load(out / "generator_dilm")
    vanilla = Generator.load(out / "generator_vanilla").model.state_dict()
    for k, v in Generator.load(out / "ckpt" / "best_generator").model.state_dict().items():
        torch.testing.assert_close(dilm.model.state_dict()[k], v, rtol=0, atol=0)
    # "step0" is the stage-1 generator before any gradient matching
    same = all(torch.equal(v, vanilla[k]) for k, v in dilm.model.state_dict().items())
    assert same == (best == "step0")
    for method in ("dilm", "vanilla_lm"):
        for dpc in (2, 3):
            for r in (0, 1):
                rows = _rows(out / "sets" / method / f"dpc{dpc}" / f"set{r}")
                assert [x["label"] for x in rows] == [0] * dpc + [1] * dpc
                assert [x["label_name"] for x in rows] == ["great"] * dpc + ["other"] * dpc
                assert len({x["review"] for x in rows}) == 2 * dpc and all(x["review"].strip() for x in rows)
    # one set regenerated (sampling a tiny generator takes seconds): oversample x DPC texts per class with the
    # set's seed, and the set holds exactly the class's K-means medoids of that pool
    dpc, seed = 3, derive_seed(0, "coreset_set", 0)
    rows = _rows(out / "sets" / "dilm" / f"dpc{dpc}" / "set0")
    pool = generate_pool(dilm, train, 2 * dpc, seed, 16)
    assert pool.class_counts().tolist() == [6, 6]
    pool_emb = SelectionEncoder("tiny-bert", 20).embed(pool.texts).astype(np.float64)
    for c in (0, 1):
        members = np.flatnonzero(pool.labels == c)
        x = pool_emb[members]
        km = KMeans(dpc, init="k-means++", n_init=1, max_iter=300, random_state=seed32(seed)).fit(x)
        medoids = set()
        for k in range(dpc):
            inside = np.flatnonzero(km.labels_ == k)
            medoids.add(
                pool.texts[members[inside[np.argmin(np.linalg.norm(x[inside] - km.cluster_centers_[k], axis=1))]]]
            )
        assert {(x["review"],) for x in rows if x["label"] == c} == medoids, c


def test_results_match_the_runs_and_evaluation_repeats(run):
    out, metrics = run
    res = metrics["learners"]["tiny-bert"]
    for method in ("dilm", "vanilla_lm", *CORESETS):
        n_sets = 1 if method == "herding" else 2
        for dpc in ("2", "3"):
            cell = res[method][dpc]
            files = []
            for r in range(n_sets):
                files += json.loads((out / "results" / "tiny-bert" / f"{method}_dpc{dpc}_set{r}.json").read_text())
            assert cell["runs"] == files
            # herding is deterministic: one set, num_sets x runs_per_set runs of it
            seeds = (
                [derive_seed(0, "eval_run", 0, k) for k in range(2)]
                if method == "herding"
                else [derive_seed(0, "eval_run", r, 0) for r in range(2)]
            )
            assert [x["seed"] for x in files] == seeds
            acc = [x["accuracy"] for x in files]
            assert cell["mean"] == pytest.approx(np.mean(acc)) and cell["std"] == pytest.approx(np.std(acc))
            assert cell["n"] == 2
            for a in acc:  # a whole number of the 24 test reviews
                assert a * 24 / 100 == pytest.approx(round(a * 24 / 100))
    full = res["full"]["all"]
    assert [x["seed"] for x in full["runs"]] == [derive_seed(0, "full_run", k) for k in range(2)]
    assert full["mean"] == pytest.approx(np.mean([x["accuracy"] for x in full["runs"]]))
    hist = json.loads((out / "ckpt" / "stage2_history.json").read_text())
    assert [h["step"] for h in hist] == [0, 1, 2, 3]  # outer_loops x inner_loops generator steps
    assert metrics["gm_seconds_per_step"] == pytest.approx(np.mean([h["seconds"] for h in hist]))
    # the same set, learner and seeds give the same scores in a fresh learner
    cfg = tiny_config()
    data = load_splits(cfg)
    small = load_text_set(out / "sets" / "kmeans_medoid" / "dpc3" / "set1")
    lrn = Learner.load("tiny-bert", 2, 20, seed=0)
    again = evaluate_set(lrn, small, data.test, cfg.finetune, [derive_seed(0, "eval_run", 1, 0)], data.validation)
    assert again == res["kmeans_medoid"]["3"]["runs"][1:]
    # the full-data runs keep their best validation step: scored on validation, that step is at least as good as
    # the last one, and the run's step is the one chosen so
    ft, seed = cfg.full_finetune, derive_seed(0, "full_run", 0)
    chosen = evaluate_set(lrn, data.train, data.validation, ft, [seed], data.validation)[0]
    last = evaluate_set(lrn, data.train, data.validation, ft.model_copy(update={"select_every": 0}), [seed])[0]
    assert chosen["accuracy"] == chosen["validation_accuracy"] >= last["accuracy"]
    assert full["runs"][0]["selected_step"] == chosen["selected_step"] and 1 <= chosen["selected_step"] <= 3


def test_rerun_resumes_without_recomputing(run):
    out, metrics = run
    results = out / "results" / "tiny-bert"
    before = (results / "dilm_dpc2_set0.json").stat().st_mtime_ns
    # lost units are redone to the same values: a whole set with its scores, and the scores of a kept set
    lost_set = out / "sets" / "kmeans_medoid" / "dpc3" / "set1"
    set_rows = (lost_set / "texts.jsonl").read_text()
    set_prov = json.loads((lost_set / "provenance.json").read_text())
    lost = {f: (results / f).read_text() for f in ("kmeans_medoid_dpc3_set1.json", "random_dpc2_set0.json")}
    shutil.rmtree(lost_set)
    for f in lost:
        (results / f).unlink()
    again = run_dilm(tiny_config(), out, progress=False)
    assert (results / "dilm_dpc2_set0.json").stat().st_mtime_ns == before
    assert again["provenance"]["torch"] == torch.__version__ and again["provenance"]["device"] == "cpu"
    strip = lambda m: {k: v for k, v in m.items() if k not in ("seconds", "provenance")}  # noqa: E731
    assert strip(again) == strip(json.loads(json.dumps(metrics)))
    assert (lost_set / "texts.jsonl").read_text() == set_rows
    prov = json.loads((lost_set / "provenance.json").read_text())
    assert {k: v for k, v in prov.items() if k != "created"} == {k: v for k, v in set_prov.items() if k != "created"}
    for f, text in lost.items():
        assert json.loads((results / f).read_text()) == json.loads(text), f


def test_other_config_is_refused(run):
    out, _ = run
    with pytest.raises(UserError, match="different config .differs in: seed"):
        run_dilm(build_config("fine_foods", "quick", dpcs=[2, 3], seed=1, overrides=TINY), out, progress=False)


def _setup_gm(tmp_path):
    sp = load_text_dataset("fine_foods", seed=0)
    train = subsample(sp.train, 40, 0)
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    learner = Learner.load("tiny-bert", 2, max_length=16, seed=0)
    emb = SelectionEncoder("tiny-bert", 16).embed(train.texts)
    cfg = tiny_gm_config(outer_loops=2, dms_interval=2, lr=1e-3)
    return gen, learner, train, emb, cfg


def test_stage2_resume_gives_the_same_generator(tmp_path):
    gen, learner, train, emb, cfg = _setup_gm(tmp_path)
    start = {k: v.clone() for k, v in gen.model.state_dict().items()}
    GradientMatcher(gen, learner, train, emb, cfg, seed=5).run(tmp_path / "a.pt", progress=False)
    full = {k: v.clone() for k, v in gen.model.state_dict().items()}
    assert any(not torch.equal(full[k], start[k]) for k in full)

    gen.model.load_state_dict(start)
    GradientMatcher(gen, learner, train, emb, cfg, seed=5).run(tmp_path / "b.pt", progress=False, stop_after=1)
    gen.model.load_state_dict(start)  # a fresh process: weights come from the checkpoint
    m = GradientMatcher(gen, learner, train, emb, cfg, seed=5)
    m.run(tmp_path / "b.pt", progress=False)
    assert m.step == 4
    for k in full:
        torch.testing.assert_close(gen.model.state_dict()[k], full[k], rtol=0, atol=0)


def test_stage1_resume_gives_the_same_generator(tmp_path):
    sp = load_text_dataset("fine_foods", seed=0)
    train = subsample(sp.train, 40, 0)
    cfg = Stage1Config(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2)
    g1 = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    l1 = train_stage1(g1, train, cfg, 3, tmp_path / "a.pt", progress=False)
    g2 = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    train_stage1(g2, train, Stage1Config(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2), 3, None, progress=False)
    # interrupted after 2 steps: keep the checkpoint written at step 2, then resume in a fresh generator
    g3 = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    state = torch.load(tmp_path / "a.pt", weights_only=False)
    assert state["step"] == 4
    half = Stage1Config(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2)
    g4 = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    import distillkit.text.stage1 as s1

    calls = {"n": 0}
    orig = s1.save_checkpoint

    def stop_at_two(path, st):
        orig(path, st)
        calls["n"] += 1
        if st["step"] == 2:
            raise KeyboardInterrupt

    s1.save_checkpoint = stop_at_two
    try:
        with pytest.raises(KeyboardInterrupt):
            train_stage1(g4, train, half, 3, tmp_path / "c.pt", progress=False)
    finally:
        s1.save_checkpoint = orig
    l3 = train_stage1(g3, train, half, 3, tmp_path / "c.pt", progress=False)
    assert l3 == pytest.approx(l1)
    for k, v in g1.model.state_dict().items():
        torch.testing.assert_close(g3.model.state_dict()[k], v, rtol=0, atol=0)
        torch.testing.assert_close(g2.model.state_dict()[k], v, rtol=0, atol=0)


def test_cli_errors_are_one_line(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("sentence,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    with pytest.raises(SystemExit) as e:
        run_app(app, ["run", "--dataset", str(csv), "--out", str(tmp_path / "r"), "--text-column", "text"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0 and "no column(s) ['text']" in err
    with pytest.raises(SystemExit) as e:
        run_app(
            app,
            ["run", "--dataset", str(csv), "--out", str(tmp_path / "r"), "--text-column", "sentence", "--dpc", "20"],
        )
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "fewer than dpc=20" in err
    with pytest.raises(SystemExit) as e:
        run_app(app, ["run", "--out", str(tmp_path / "r2"), "--set", "gm.nonsense=3"])
    assert e.value.code == 2 and "unknown setting gm.nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_app(app, ["run", "--out", str(tmp_path / "r3"), "--set", "stage1.class_token_lr_mult=0"])
    assert e.value.code == 2 and "class_token_lr_mult must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_run_and_eval(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["run", "--out", str(out), "--dpc", "2", "--quiet"]
    for o in TINY:
        args += ["--set", o]
    args += ["--set", 'methods=["dilm","random"]', "--set", "num_sets=1", "--set", 'checkpoint="last"']
    args += [
        "--set",
        "gm.outer_loops=1",
        "--set",
        "share_pool=true",
        "--set",
        "gm.learner_train_body=false",
        "--set",
        "finetune.train_body=false",
    ]
    run_app(app, args)
    text = capsys.readouterr().out
    assert "dilm" in text and "random" in text and (out / "metrics.json").exists()
    run_app(
        app,
        [
            "eval",
            "--set-path",
            str(out / "sets" / "dilm" / "dpc2" / "set0"),
            "--learner",
            "tiny-bert",
            "--runs",
            "2",
            "--steps",
            "2",
            "--max-test",
            "10",
        ],
    )
    assert "over 2 runs" in capsys.readouterr().out
    run_app(
        app,
        [
            "generate",
            "--generator",
            str(out / "generator_dilm"),
            "--dpc",
            "2",
            "--oversample",
            "2",
            "--encoder",
            "tiny-bert",
            "--out",
            str(tmp_path / "g"),
        ],
    )
    rows = (tmp_path / "g" / "texts.jsonl").read_text().splitlines()
    assert len(rows) == 4 and np.all([json.loads(r)["text"] for r in rows])
