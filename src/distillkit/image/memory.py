"""Peak memory of a block of work, measured the same way for every method.

On CUDA: torch.cuda.max_memory_allocated above the level at entry. On the CPU: the peak of the bytes the
C allocator has handed out (glibc mallinfo2, sampled by a thread every 0.2 ms) above the level at entry;
resident-set figures are unreliable where the kernel reclaims pages proactively. Where mallinfo2 is not
available (not glibc), the CPU figure falls back to the growth of the peak resident set size.
"""

from __future__ import annotations

import ctypes
import resource
import threading
import time
from types import TracebackType

import torch


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2():
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _mallinfo2()


def allocated_bytes() -> int | None:
    """Bytes the C allocator has handed out right now (None where mallinfo2 is missing)."""
    if _MALLINFO2 is None:
        return None
    m = _MALLINFO2()
    return m.uordblks + m.hblkhd


class PeakMemory:
    """`with PeakMemory(device) as pm: ...` then `pm.peak_mb`: peak extra memory the block used, in MiB."""

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.0002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self._base = allocated_bytes()
        if self._base is None:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "ru_maxrss growth"
            return self
        self.method = "glibc mallinfo2 peak"
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, allocated_bytes() or 0)
            time.sleep(self.interval)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method == "ru_maxrss growth":
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, allocated_bytes() or 0)
        self.peak_mb = max(peak - self._base, 0) / 2**20
