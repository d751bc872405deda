"""Teacher pools: N networks trained on the full training split, each kept at its best validation epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.augment import DSA
from distillkit.image.checkpoints import file_hash, load_net, save_net
from distillkit.image.train import UntilConverged, accuracy, train_net
from distillkit.nets import build_net, canonical_arch
from distillkit.progress import progress
from distillkit.runs import read_json, write_json
from distillkit.seeding import generator, seeded


class TeacherConfig(BaseModel):
    """How teachers are trained (spec defaults: 100 epochs, SGD 0.05, batch 256, DSA)."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "convnet"
    net_options: dict[str, Any] = Field(default_factory=dict)
    num_teachers: int = Field(1, ge=1)
    epochs: int = Field(100, ge=1, description="the cap (with patience) or the fixed schedule (without)")
    patience: int | None = Field(
        10, ge=1, description="epochs without a better validation accuracy before lr x0.1, then before stopping"
    )
    lr: float = 0.05
    batch_size: int = 256
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    seed: int = 0


def data_signature(data: ImageData) -> dict[str, Any]:
    """What a teacher must agree on with the data it is used with."""
    c, h, _ = data.shape
    return {
        "dataset": data.name,
        "channels": c,
        "image_size": h,
        "num_classes": data.num_classes,
        "zca": bool(data.options.get("zca")),
    }


def train_teacher(data: ImageData, cfg: TeacherConfig, index: int, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Train teacher `index`; keep the epoch with the best validation accuracy (never the test split).

    With `cfg.patience`, training runs until validation accuracy stops improving (`UntilConverged`, capped
    at `cfg.epochs`); without it, the published fixed schedule (lr x0.1 after half of `cfg.epochs`).
    """
    c, h, _ = data.shape
    with seeded(cfg.seed, "teacher_init", index):
        net = build_net(cfg.arch, c, data.num_classes, h, **cfg.net_options).to(device)
    watch = UntilConverged(data.x_val, data.y_val, cfg.patience or cfg.epochs + 1, min_delta=0.0)
    dsa = DSA(cfg.dsa_strategy, generator(cfg.seed, "teacher_dsa", index)) if cfg.dsa else None
    train_net(
        net,
        data.x_train,
        data.y_train,
        epochs=cfg.epochs,
        lr=cfg.lr,
        loss="ce",
        batch_size=cfg.batch_size,
        decay_after=cfg.epochs + 1 if cfg.patience else cfg.epochs // 2,
        dsa=dsa,
        generator=generator(cfg.seed, "teacher_order", index),
        on_epoch=watch,
        desc=f"teacher {index}",
    )
    watch.restore(net)
    fit = watch.summary()
    meta = {
        "arch": canonical_arch(cfg.arch),
        "net_options": cfg.net_options,
        **data_signature(data),
        "mean": data.mean,
        "std": data.std,
        "data_options": data.options,
        "index": index,
        "best_epoch": fit["best_epoch"],
        "val_acc": fit["val_acc"],
        "epochs_run": fit["epochs_run"],
        "converged": fit["converged"] if cfg.patience else None,
        "test_acc": accuracy(net, data.x_test, data.y_test),
        "config": cfg.model_dump(),
    }
    return net, meta


def _training(config: dict[str, Any]) -> dict[str, Any]:
    """What decides how each teacher is trained: its settings but the pool size."""
    return {k: v for k, v in config.items() if k != "num_teachers"}


def train_pool(data: ImageData, cfg: TeacherConfig, out: Path, device: str = "cpu") -> Path:
    """Train the pool into `out` (teacher_i.safetensors + pool.json); finished teachers are kept on resume.

    A folder holding teachers trained with other settings or for other data is refused, never reused.
    """
    out = Path(out)
    manifest_path = out / "pool.json"
    entries: list[dict] = []
    if manifest_path.exists():
        manifest = read_json(manifest_path)
        metas = [out / Path(e["file"]).with_suffix(".json") for e in manifest["teachers"]]
        trained = [_training(read_json(m)["config"]) for m in metas if m.exists()]
        old = {"data": manifest.get("signature"), "training": trained}
        new = {"data": data_signature(data), "training": [_training(cfg.model_dump())] * len(trained)}
        if old != new:
            differs = sorted(k for k in new if old[k] != new[k])
            raise UserError(
                f"{out} holds teachers trained with other settings (differs in: {', '.join(differs)}); "
                "pass another --out or remove that folder"
            )
        entries = manifest["teachers"]
    for i in progress(range(cfg.num_teachers), desc="teachers", initial=0):
        path = out / f"teacher_{i}.safetensors"
        if i < len(entries) and path.exists():
            continue
        net, meta = train_teacher(data, cfg, i, device)
        save_net(net, path, meta)
        entries = entries[:i] + [
            {"file": path.name, "sha256_16": file_hash(path), "val_acc": meta["val_acc"], "test_acc": meta["test_acc"]}
        ]
        write_json(manifest_path, {"signature": data_signature(data), "teachers": entries})
    return manifest_path


class TeacherPool:
    """A loaded pool: the networks, frozen, in manifest order, and their ids."""

    def __init__(self, manifest: Path, device: str = "cpu") -> None:
        manifest = Path(manifest)
        if manifest.is_dir():
            manifest = manifest / "pool.json"
        if not manifest.exists():
            raise UserError(f"no teacher pool at {manifest}; train one with `distill image teacher`")
        try:
            info = json.loads(manifest.read_text())
            entries = info["teachers"]
        except (json.JSONDecodeError, KeyError):
            raise UserError(f"{manifest} is not a teacher-pool manifest; re-create the pool") from None
        self.manifest = manifest
        self.signature = info.get("signature", {})
        self.nets, self.metas, self.ids = [], [], []
        for e in entries:
            net, meta = load_net(manifest.parent / e["file"], device)
            self.nets.append(net)
            self.metas.append(meta)
            self.ids.append(f"{e['file']}@{e['sha256_16']}")
        if not self.nets:
            raise UserError(f"teacher pool {manifest} is empty; train it again")

    def check_matches(self, data: ImageData) -> None:
        sig = data_signature(data)
        if self.signature and self.signature != sig:
            diff = {k: (self.signature.get(k), v) for k, v in sig.items() if self.signature.get(k) != v}
            raise UserError(
                f"the teacher pool was built for other data {diff} (pool, data); "
                "train a pool for this dataset or load the matching one"
            )

    def __len__(self) -> int:
        return len(self.nets)
