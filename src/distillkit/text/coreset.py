"""Text coreset selectors on embeddings, and the frozen selection encoder that makes the embeddings.

The selections themselves are `distillkit.coresets`; here each becomes a selector (embeddings, k, seed):

- `kmeans_medoid` (called "K-centers" in the DiLM paper): K-means medoids, seeded.
- `greedy_k_center`: farthest-point greedy k-center from a seeded random first point.
- `herding`: deterministic; the seed is not used.
- `random`: a seeded uniform sample.

Embeddings are taken as float64, so each selection is made in double precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from distillkit.coresets import greedy_k_center, herding, kmeans_medoid, per_class, random_indices
from distillkit.progress import progress as progress_bar
from distillkit.text.models import load_encoder_classifier


def seeded_k_center(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Greedy k-center from a seeded random first point; every row (in order) when k >= N."""
    x = np.asarray(x, dtype=np.float64)
    if k >= len(x):
        return np.arange(len(x))
    return greedy_k_center(x, k, first=int(np.random.default_rng(seed).integers(len(x))))


def herding_selector(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Herding on float64 embeddings; deterministic, so `seed` is ignored."""
    return herding(np.asarray(x, dtype=np.float64), k)


def random_selector(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A seeded uniform sample of min(k, N) rows, sorted."""
    return random_indices(len(x), k, seed)


SELECTORS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "random": random_selector,
    "kmeans_medoid": kmeans_medoid,
    "greedy_k_center": seeded_k_center,
    "herding": herding_selector,
}
DETERMINISTIC = {"herding"}


def select_per_class(method: str, emb: np.ndarray, labels: np.ndarray, dpc: int, seed: int) -> np.ndarray:
    """Indices of `dpc` rows per class chosen by `method` on each class's embeddings."""
    select = SELECTORS[method]
    chosen = per_class(labels, lambda rows: select(emb[rows], dpc, seed))
    return np.concatenate(list(chosen.values()))


class SelectionEncoder:
    """A frozen pretrained encoder; its last-layer [CLS] vector is the embedding for selection."""

    def __init__(self, name: str, max_length: int = 64, batch_size: int = 64, device: str = "cpu"):
        model, self.tokenizer = load_encoder_classifier(name, 2)
        base = getattr(model, model.base_model_prefix, model)
        self.model = base.to(device).eval()
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    @torch.no_grad()
    def embed(self, texts: Sequence[tuple[str, ...]], progress: bool = False) -> np.ndarray:
        out = []
        steps = range(0, len(texts), self.batch_size)
        for i in progress_bar(steps, "embed", leave=False, disable=not progress):
            rows = texts[i : i + self.batch_size]
            second = [t[1] for t in rows] if len(rows[0]) > 1 else None
            enc = self.tokenizer(
                [t[0] for t in rows],
                second,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.model(**enc).last_hidden_state[:, 0].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 1), dtype=np.float32)
