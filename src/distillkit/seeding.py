"""One user seed, many independent random streams, for every system: each (stream, steps) gets its own seed.

Streams are named (`"eval_dsa"`, `"gm_pool"`, ...), never numbered, so two uses cannot collide by accident,
and a run resumed at step t draws exactly what an uninterrupted run draws there.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(seed: int, stream: str, *steps: int) -> int:
    """A 60-bit seed for (seed, stream, steps); no steps means step 0."""
    key = ":".join([str(seed), stream, *(str(int(s)) for s in (steps or (0,)))])
    return int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)


def seed32(seed: int) -> int:
    """The seed folded into a positive 32-bit int, for libraries and servers that take no larger one
    (scikit-learn's random_state, an OpenAI-compatible request's `seed`)."""
    return seed % 2**31


def generator(seed: int, stream: str, *steps: int) -> torch.Generator:
    """A CPU torch generator for `stream` at `steps`, independent of every other stream and of the global RNG."""
    return torch.Generator().manual_seed(derive_seed(seed, stream, *steps))


def numpy_rng(seed: int, stream: str, *steps: int) -> np.random.Generator:
    """A numpy generator for `stream` at `steps`."""
    return np.random.default_rng(derive_seed(seed, stream, *steps))


@contextlib.contextmanager
def seeded(seed: int, stream: str, *steps: int) -> Iterator[None]:
    """Run a block that draws from torch's global RNG (network construction, dropout, sampling) under a
    derived seed, leaving the global RNG as it was afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream, *steps))
        yield
