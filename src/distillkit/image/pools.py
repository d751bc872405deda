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

from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.checkpoints import file_hash, read_meta
from distillkit.progress import progress
from distillkit.runs import read_json, write_json


@dataclass(frozen=True)
class PoolKind:
    """How one kind of pool is laid out and named."""

    manifest: str  # the manifest's file name, e.g. "pool.json"
    key: str  # the manifest key listing the networks, e.g. "teachers"
    stem: str  # network i is stored in f"{stem}_{i}.safetensors"
    name: str  # what users call the pool, e.g. "teacher pool"
    size_field: str  # the config field giving the pool size: it may grow, the rest must match
    command: str  # the command that trains one

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


def check_same_training(out: Path, kind: PoolKind, manifest: dict, signature: dict, config: dict[str, Any]) -> None:
    """Refuse a folder whose networks were trained on other data or with other settings (the pool size aside)."""

    def training(cfg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in cfg.items() if k != kind.size_field}

    files = [out / e["file"] for e in manifest[kind.key] if isinstance(e, dict) and "file" in e]
    trained = [training(read_meta(f).get("config", {})) for f in files if f.exists()]
    old = {"data": manifest.get("signature"), "training": trained}
    new = {"data": signature, "training": [training(config)] * len(trained)}
    if old != new:
        differs = sorted(k for k in new if old[k] != new[k])
        raise UserError(
            f"{out} holds {kind.key} trained with other settings (differs in: {', '.join(differs)}); "
            "pass another --out or remove that folder"
        )


def train_networks(
    out: Path,
    kind: PoolKind,
    data: ImageData,
    config: dict[str, Any],
    train_one: Callable[[int, Path], dict[str, Any]],
    manifest_extra: dict[str, Any] | None = None,
) -> Path:
    """Train networks 0 .. config[kind.size_field] - 1 into `out`, keeping those already there; the manifest path.

    `train_one(i, path)` trains network i, writes it to `path` (its header metadata holding `config`) and
    returns the scores to list in the manifest. The manifest is rewritten (atomically) after every network.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / kind.manifest
    signature = data_signature(data)
    entries: list[dict] = []
    if manifest_path.exists():
        manifest = read_json(manifest_path)
        if not isinstance(manifest, dict) or not isinstance(manifest.get(kind.key), list):
            raise UserError(
                f"{manifest_path} is not a pool manifest (no readable '{kind.key}' list); "
                "pass another --out or remove that folder"
            )
        check_same_training(out, kind, manifest, signature, config)
        entries = manifest[kind.key]
    for i in progress(range(config[kind.size_field]), desc=kind.key, initial=0):
        path = out / kind.file(i)
        if i < len(entries) and path.exists():
            continue
        scores = train_one(i, path)
        entries = entries[:i] + [{"file": path.name, "sha256_16": file_hash(path), **scores}]
        write_json(manifest_path, {"signature": signature, **(manifest_extra or {}), kind.key: entries})
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
