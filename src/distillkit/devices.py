"""One meaning of `--device` in every system (`auto`: CUDA when present, else CPU; `cpu`, `cuda`, `cuda:N`, `mps`),
and the precision switches: bf16 autocast (`precision`) and TF32 matmuls (`tf32`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


# ---- numeric precision -----------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16")


def bf16_supported(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 natively: Ampere or newer GPUs; the CPU (autocast); not MPS."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu"


def check_precision(precision: str, device: str | torch.device) -> str:
    """`precision` ("fp32" or "bf16") if `device` can run it; anything else is one clear line."""
    name = (precision or "fp32").strip().lower()
    if name not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if name == "bf16" and not bf16_supported(device):
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        raise UserError(f"precision bf16 needs bfloat16 support, which {where} lacks; use precision fp32")
    return name


def autocast(device: str | torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` for precision "bf16" (checked), a no-op for "fp32"."""
    device = torch.device(device)
    if check_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls and convolutions on CUDA (on: faster on Ampere+, ~1e-3 relative error; off: IEEE)."""
    mode = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """`set_tf32(enabled)` inside the block; the previous settings come back after it."""
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    set_tf32(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before
