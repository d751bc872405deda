"""The distilled-set file: images, hard labels, teacher soft labels and metadata in one safetensors file.

It loads with a plain `safetensors.torch.load_file(path)`: keys `images` (N, C, H, W, normalised),
`labels` (N,), `soft_labels` (N, classes); `zca_mean`/`zca_matrix` when ZCA was used. The JSON metadata
(header key "distillkit") holds the dataset, classes, normalisation and the label teacher's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distillkit.data.image_prep import to_pixels
from distillkit.data.images import ImageData
from distillkit.errors import UserError
from distillkit.image.checkpoints import read_safetensors
from distillkit.runs import save_safetensors

REQUIRED = ("images", "labels")


def provenance(method: str, data: ImageData, ipc: int) -> dict[str, Any]:
    """The metadata every distilled set starts with: how it was made and how to read its pixels back."""
    return {
        "method": method,
        "dataset": data.name,
        "classes": data.classes,
        "ipc": ipc,
        "mean": data.mean,
        "std": data.std,
        "data_options": data.options,
    }


@dataclass
class DistilledSet:
    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None
    meta: dict[str, Any] = field(default_factory=dict)
    zca: dict[str, torch.Tensor] | None = None

    def pixels(self) -> torch.Tensor:
        """The images as [0, 1] pixels from the set's own metadata (ZCA images are rescaled per image)."""
        plain = self.zca is None and "mean" in self.meta
        return to_pixels(self.images, (self.meta["mean"], self.meta["std"]) if plain else None)

    def save(self, path: Path) -> None:
        import json

        tensors = {"images": self.images.detach().cpu().contiguous(), "labels": self.labels.cpu().contiguous()}
        if self.soft_labels is not None:
            tensors["soft_labels"] = self.soft_labels.detach().cpu().contiguous()
        if self.zca:
            tensors.update({k: v.cpu().contiguous() for k, v in self.zca.items()})
        save_safetensors(Path(path), tensors, {"distillkit": json.dumps(self.meta, default=str)})

    @classmethod
    def load(cls, path: Path) -> DistilledSet:
        tensors, meta = read_safetensors(path)
        missing = [k for k in REQUIRED if k not in tensors]
        if missing:
            raise UserError(f"{path} lacks {missing}; it is not a distilled-set file")
        images, labels = tensors["images"], tensors["labels"]
        if images.ndim != 4 or len(images) != len(labels):
            raise UserError(
                f"{path} holds images of shape {tuple(images.shape)} for {len(labels)} labels; "
                "expected (N, C, H, W) with one label each"
            )
        zca = {k: tensors[k] for k in ("zca_mean", "zca_matrix") if k in tensors} or None
        return cls(images, labels.long(), tensors.get("soft_labels"), meta, zca)
