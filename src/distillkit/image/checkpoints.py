"""Network checkpoints as safetensors plus JSON metadata; they always load on the CPU first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from distillkit.errors import UserError
from distillkit.nets import build_net
from distillkit.runs import atomic_path, file_digest, save_safetensors, save_torch


def file_hash(path: Path) -> str:
    """The first 16 hex digits of a file's sha256 (what pool manifests record)."""
    return file_digest(path, 16)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors with distillkit metadata in the header, atomically (a temp file, then rename)."""
    save_safetensors(Path(path), tensors, {"distillkit": json.dumps(meta)})


def save_net(net: nn.Module, path: Path, meta: dict[str, Any]) -> None:
    """Write `path` (.safetensors, metadata inside too) and `path.json` with the same metadata, each atomically."""
    path = Path(path)
    write_safetensors(path, {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, meta)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


def read_meta(path: Path) -> dict[str, Any]:
    """The distillkit metadata in a safetensors file's header, without reading its tensors."""
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            return json.loads((f.metadata() or {})["distillkit"])
    except Exception as e:  # noqa: BLE001 - any unreadable file means the same thing to the user
        raise UserError(f"{path} is missing or damaged ({type(e).__name__}); delete it and train it again") from None


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and distillkit metadata of a safetensors file; a damaged file becomes a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; check the path")
    try:
        tensors = safetensors.torch.load_file(path, device="cpu")
        with safetensors.safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("distillkit", "{}"))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(
            f"{path} is not a readable distillkit safetensors file ({e}); re-create it or restore it from a backup"
        ) from None
    return tensors, meta


def load_net(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from a checkpoint written by `save_net`."""
    state, meta = read_safetensors(path)
    if "arch" not in meta:
        raise UserError(f"{path} carries no network metadata; it was not written by distillkit")
    net = build_net(meta["arch"], meta["channels"], meta["num_classes"], meta["image_size"], **meta["net_options"])
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{path} does not match its architecture metadata ({str(e)[:120]}); re-create it") from None
    return net.to(device), meta


def save_state(path: Path, blob: dict[str, Any], config: dict[str, Any]) -> None:
    """Write a resumable run state atomically (temp file, then rename), tagged with the run's config."""
    save_torch(Path(path), {**blob, "config": config})


def load_state(path: Path, config: dict[str, Any], method: str) -> dict[str, Any]:
    """A state written by `save_state` for the same config; a damaged file or another config is a UserError."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise UserError(f"checkpoint {path} is damaged ({type(e).__name__}); delete it to restart the run") from None
    if blob.get("config") != config:
        raise UserError(
            f"checkpoint {path} was written with another {method} config; use the same settings "
            "or a new --out directory"
        )
    return blob
