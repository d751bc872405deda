"""Pools of trained networks: one folder, one network per safetensors file, and a JSON manifest.

Teacher pools (`teacher_i.safetensors`, `pool.json`) and MTT's expert pools (`expert_i.safetensors`,
`experts.json`) are both kept this way. The manifest records the data signature and, per network, its file,
a hash and its scores; each network file carries its metadata (with the settings it was trained with) in its
header. Training resumes where it stopped: finished networks are kept. A folder is only extended with
networks trained with the same settings (all but the pool size) on the same data; anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from distillkit.data.images import ImageData
from distillkit.distributed import barrier, is_main, process_group, share
from distillkit.errors import UserError
from distillkit.image.augment import DSA
from distillkit.image.checkpoints import file_hash, read_meta
from distillkit.image.train import train_net
from distillkit.nets import build_net, canonical_arch
from distillkit.progress import progress
from distillkit.runs import read_json, write_json
from distillkit.seeding import generator, seeded


@dataclass(frozen=True)
class PoolKind:
    """How one kind of pool is laid out and named."""

    manifest: str  # the manifest's file name, e.g. "pool.json"
    key: str  # the manifest key listing the networks, e.g. "teachers"
    stem: str  # network i is stored in f"{stem}_{i}.safetensors"
    name: str  # what users call the pool, e.g. "teacher pool"
    size_field: str  # the config field giving the pool size: it may grow, the rest must match
    command: str  # the command that trains one
    scores: tuple[str, ...]  # the metadata fields of each network the manifest lists, e.g. ("val_acc",)

    def file(self, index: int) -> str:
        return f"{self.stem}_{index}.safetensors"


def data_signature(data: ImageData) -> dict[str, Any]:
    """What a trained network must agree on with the data it is used with."""
    c, h, _ = data.shape
    return {
        "dataset": data.name,
        "channels": c,
        "image_size": h,
        "num_classes": data.num_classes,
        "zca": bool(data.options.get("zca")),
    }


class PoolNetConfig(BaseModel):
    """The settings every pool's networks share: the architecture and its options. A subclass adds the schedule
    (`epochs`, `lr`, `batch_size`), DSA (`dsa`, `dsa_strategy`) and `seed`, which the methods read."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "convnet"
    net_options: dict[str, Any] = Field(default_factory=dict)

    def init_net(self, data: ImageData, kind: PoolKind, index: int, device: str | torch.device) -> nn.Module:
        """Network `index` of a pool of `kind`, freshly initialised from its own seed stream, on `device`."""
        c, h, _ = data.shape
        with seeded(self.seed, f"{kind.stem}_init", index):
            return build_net(self.arch, c, data.num_classes, h, **self.net_options).to(device)

    def train_on_real(
        self, net: nn.Module, data: ImageData, kind: PoolKind, index: int, decay_after: int, **options: Any
    ) -> None:
        """Train network `index` on the real training split with this schedule, its own DSA draws and batch order;
        `options` go to `train_net` (e.g. `on_epoch`, `momentum`)."""
        dsa = DSA(self.dsa_strategy, generator(self.seed, f"{kind.stem}_dsa", index)) if self.dsa else None
        train_net(
            net,
            data.x_train,
            data.y_train,
            epochs=self.epochs,
            lr=self.lr,
            loss="ce",
            batch_size=self.batch_size,
            decay_after=decay_after,
            dsa=dsa,
            generator=generator(self.seed, f"{kind.stem}_order", index),
            desc=f"{kind.stem} {index}",
            **options,
        )

    def net_meta(self, data: ImageData, index: int) -> dict[str, Any]:
        """The metadata every pool network starts with: its architecture, the data it was trained on, its index."""
        return {
            "arch": canonical_arch(self.arch),
            "net_options": self.net_options,
            **data_signature(data),
            "mean": data.mean,
            "std": data.std,
            "data_options": data.options,
            "index": index,
        }


def check_same_training(
    out: Path, kind: PoolKind, manifest: dict | None, files: list[Path], signature: dict, config: dict[str, Any]
) -> None:
    """Refuse a folder whose networks were trained on other data or with other settings (the pool size aside).

    `files` are the network files already there; each carries its data signature and settings in its header.
    """

    def training(cfg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in cfg.items() if k != kind.size_field}

    metas = [read_meta(f) for f in files]
    listed = [manifest.get("signature")] if manifest is not None else []
    old = {
        "data": listed + [{k: m.get(k) for k in signature} for m in metas],
        "training": [training(m.get("config", {})) for m in metas],
    }
    new = {"data": [signature] * len(old["data"]), "training": [training(config)] * len(metas)}
    if old != new:
        differs = sorted(k for k in new if old[k] != new[k])
        raise UserError(
            f"{out} holds {kind.key} trained with other settings (differs in: {', '.join(differs)}); "
            "pass another --out or remove that folder"
        )


def read_manifest(path: Path, kind: PoolKind) -> dict | None:
    """The manifest at `path` (None when there is none yet); one that lists no networks is one clear line."""
    if not path.exists():
        return None
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get(kind.key), list):
        raise UserError(
            f"{path} is not a pool manifest (no readable '{kind.key}' list); pass another --out or remove that folder"
        )
    return manifest


def train_networks(
    out: Path,
    kind: PoolKind,
    data: ImageData,
    config: dict[str, Any],
    train_one: Callable[[int, Path, torch.device], None],
    device: str | torch.device = "cpu",
    manifest_extra: dict[str, Any] | None = None,
) -> Path:
    """Train networks 0 .. config[kind.size_field] - 1 into `out`, keeping those already there; the manifest path.

    `train_one(i, path, device)` trains network i and writes it to `path` atomically, its header metadata holding
    `config`, the data signature and the scores in `kind.scores`. A network file that exists is finished. Under
    torchrun the networks still to train are shared over the ranks (`distributed.share`: network i of them on
    rank i mod N, on its own GPU); rank 0 writes the manifest once every rank is done, listing each file's hash
    and scores, so the pool is the same for any number of processes. A manifest listing more networks keeps
    them all.
    """
    with process_group(device) as dev:

        def train_here(index: int, path: Path) -> None:
            train_one(index, path, dev)

        return _train_networks(Path(out), kind, data, config, train_here, manifest_extra)


def _train_networks(
    out: Path,
    kind: PoolKind,
    data: ImageData,
    config: dict[str, Any],
    train_one: Callable[[int, Path], None],
    manifest_extra: dict[str, Any] | None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / kind.manifest
    signature = data_signature(data)
    manifest = read_manifest(manifest_path, kind)
    count = max(config[kind.size_field], len(manifest[kind.key]) if manifest else 0)
    files = [out / kind.file(i) for i in range(count)]
    check_same_training(out, kind, manifest, [f for f in files if f.exists()], signature, config)
    for i in progress(share(range(count), lambda i: files[i].exists()), desc=kind.key):
        train_one(i, files[i])
    barrier()
    if is_main():
        entries = [
            {"file": f.name, "sha256_16": file_hash(f), **{k: read_meta(f)[k] for k in kind.scores}} for f in files
        ]
        write_json(manifest_path, {"signature": signature, **(manifest_extra or {}), kind.key: entries})
    barrier()
    return manifest_path


class PoolFolder:
    """A trained pool on disk: its manifest, network files and ids (`file@hash`), in manifest order."""

    kind: ClassVar[PoolKind]

    def __init__(self, path: Path, kind: PoolKind | None = None) -> None:
        self.kind = kind or type(self).kind
        path = Path(path)
        manifest = path / self.kind.manifest if path.is_dir() else path
        if not manifest.exists():
            raise UserError(f"no {self.kind.name} at {manifest}; train one with `{self.kind.command}`")
        try:
            info = json.loads(manifest.read_text())
            entries = info[self.kind.key]
            self.files = [manifest.parent / e["file"] for e in entries]
            self.ids = [f"{e['file']}@{e['sha256_16']}" for e in entries]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(
                f"{manifest} is not a pool manifest (no readable '{self.kind.key}' list); "
                f"re-create it with `{self.kind.command}`"
            ) from None
        if not self.files:
            raise UserError(f"the {self.kind.name} {manifest} is empty; train it again")
        self.manifest = manifest
        self.signature: dict[str, Any] = info.get("signature", {})

    def __len__(self) -> int:
        return len(self.files)

    @property
    def identity(self) -> str:
        """A content hash of the pool: its networks' file hashes, in order (a run given this pool records it)."""
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()[:16]

    def check_matches(self, data: ImageData) -> None:
        """Refuse data other than the pool was trained on (a pool without a signature is not checked)."""
        sig = data_signature(data)
        if self.signature and self.signature != sig:
            diff = {k: (self.signature.get(k), v) for k, v in sig.items() if self.signature.get(k) != v}
            raise UserError(
                f"the {self.kind.name} was built for other data {diff} (pool, data); "
                "train a pool for this dataset or load the matching one"
            )


def pool_identity(path: Path, kind: PoolKind) -> dict[str, str]:
    """What a run records about a pool it was given: where it is and what it holds (read from its manifest)."""
    return {"path": str(path), "identity": PoolFolder(path, kind).identity}
