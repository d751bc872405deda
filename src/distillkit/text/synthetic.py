"""The distilled set: 100 x DPC generated candidates per class, K-means-medoid selection, and saving.

Saved as `texts.jsonl` (one row per text: fields, label, label_name), a Hugging Face `datasets` folder
(`hf/`, `datasets.load_from_disk`) and `provenance.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from distillkit.coresets import kmeans_medoid
from distillkit.data.text import TextDataset
from distillkit.errors import UserError
from distillkit.runs import atomic_path
from distillkit.seeding import derive_seed
from distillkit.text.coreset import SelectionEncoder
from distillkit.text.generator import Generator


def generate_pool(
    gen: Generator,
    template: TextDataset,
    per_class: int,
    seed: int,
    batch_size: int = 64,
    progress: bool = False,
) -> TextDataset:
    """`per_class` freshly sampled texts for every class."""
    texts: list[tuple[str, ...]] = []
    labels: list[int] = []
    for c in range(template.num_classes):
        texts += gen.sample(
            c, per_class, seed=derive_seed(seed, "synthetic_sample", c), batch_size=batch_size, progress=progress
        )
        labels += [c] * per_class
    return TextDataset(
        texts,
        np.asarray(labels),
        list(template.label_names),
        list(template.text_fields),
        template.name,
        template.metric,
        {"source": "generated"},
    )


def select_from_pool(pool: TextDataset, emb: np.ndarray | None, dpc: int, seed: int) -> TextDataset:
    """`dpc` K-means medoids per class of a generated pool (the first `dpc` without embeddings)."""
    keep = []
    for c in range(pool.num_classes):
        idx = np.flatnonzero(pool.labels == c)
        if emb is not None and len(idx) > dpc:
            keep.append(idx[kmeans_medoid(emb[idx], dpc, seed)])
        else:
            keep.append(idx[:dpc])
    return pool.subset(np.concatenate(keep))


def generate_set(
    gen: Generator,
    encoder: SelectionEncoder | None,
    template: TextDataset,
    dpc: int,
    oversample: int,
    seed: int,
    batch_size: int = 64,
    progress: bool = False,
) -> TextDataset:
    """Per class: sample `oversample * dpc` texts, keep `dpc` K-means medoids."""
    pool = generate_pool(gen, template, max(dpc, oversample * dpc), seed, batch_size, progress)
    emb = encoder.embed(pool.texts) if encoder is not None else None
    return select_from_pool(pool, emb, dpc, seed)


def save_text_set(ds: TextDataset, out: Path, provenance: dict[str, Any]) -> Path:
    """Write JSONL + HF datasets folder + provenance.json into `out` (replaced atomically)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        _write_text_set(ds, tmp, provenance)
    return out


def _write_text_set(ds: TextDataset, tmp: Path, provenance: dict[str, Any]) -> None:
    """The files of a text set, written into the folder `tmp`."""
    import datasets

    rows = ds.to_records()
    with open(tmp / "texts.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    features = datasets.Features(
        {
            **{k: datasets.Value("string") for k in ds.text_fields},
            "label": datasets.ClassLabel(names=list(ds.label_names)),
            "label_name": datasets.Value("string"),
        }
    )
    hf = datasets.Dataset.from_list(rows, features=features)
    hf.info.description = json.dumps(provenance, default=str)
    hf.save_to_disk(str(tmp / "hf"))
    (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))


def load_text_set(path: Path) -> TextDataset:
    """Read a saved set (its texts.jsonl and provenance.json) back into a TextDataset."""
    path = Path(path)
    if not (path / "provenance.json").exists():
        raise UserError(f"{path} is not a saved text set (no provenance.json); pass a folder under RUN/sets/")
    prov = json.loads((path / "provenance.json").read_text())
    rows = [json.loads(line) for line in (path / "texts.jsonl").read_text(encoding="utf-8").splitlines() if line]
    fields = prov["text_fields"]
    return TextDataset(
        [tuple(r[k] for k in fields) for r in rows],
        np.asarray([r["label"] for r in rows]),
        prov["label_names"],
        fields,
        prov.get("dataset", "text"),
        prov.get("metric", "accuracy"),
    )
