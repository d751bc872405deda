"""Small shared pieces of the training loops: derived seeds, optimisers, atomic checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillkit.runs import save_torch

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_")


def adamw(model: nn.Module | list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and norm weights."""
    named = (
        list(model.named_parameters()) if isinstance(model, nn.Module) else [(str(i), p) for i, p in enumerate(model)]
    )
    decay = [p for n, p in named if p.requires_grad and not any(k in n for k in NO_DECAY)]
    rest = [p for n, p in named if p.requires_grad and any(k in n for k in NO_DECAY)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )


def cosine(opt: torch.optim.Optimizer, total: int, warmup_ratio: float):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(opt, int(round(warmup_ratio * total)), max(total, 1))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill never leaves half a checkpoint."""
    save_torch(Path(path), state)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
