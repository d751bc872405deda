"""One user seed, many independent random streams: each (stream, step) gets its own generator."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


def derive_seed(seed: int, stream: str, step: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}:{stream}:{step}".encode()).hexdigest()
    return int(digest[:15], 16)


def generator(seed: int, stream: str, step: int = 0) -> torch.Generator:
    """A CPU generator for `stream` at `step`, independent of every other stream and of the global RNG."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, step))


@contextlib.contextmanager
def seeded(seed: int, stream: str, step: int = 0) -> Iterator[None]:
    """Run a block (e.g. network construction, which draws from the global RNG) under a derived seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream, step))
        yield
