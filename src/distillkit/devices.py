"""One meaning of `--device` in every system: `auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:N`, `mps`."""

from __future__ import annotations

import torch

from distillkit.errors import UserError

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps (default: auto)"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device `spec` names; a device this machine lacks is one clear line, before any work."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = (spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {spec!r} is not a device; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec} asks for CUDA, but this machine has none; use --device auto or cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"--device {spec} asks for GPU {device.index}, but this machine has {count} "
                f"(cuda:0 to cuda:{count - 1}); pick one of those or use --device auto"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {spec} asks for Apple MPS, which this machine lacks; use --device auto or cpu")
    elif device.type != "cpu":
        raise UserError(f"--device {spec!r} is not supported; use {DEVICE_HELP}")
    return device
