"""Coreset selectors on embeddings, and the frozen selection encoder that makes the embeddings.

- `kmeans_medoid` (called "K-centers" in the DiLM paper): K-means (k-means++, n_init 1, max_iter 300,
  seeded), then each cluster's member nearest to its centroid.
- `greedy_k_center`: the farthest-point greedy 2-approximation of the k-center problem.
- `herding`: greedy choice that keeps the running sum closest to (i+1) x the mean (deterministic).
- `random`: a seeded uniform sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from distillkit.progress import progress as progress_bar
from distillkit.seeding import seed32
from distillkit.text.models import load_encoder_classifier


def kmeans_medoid(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of the members nearest to the K-means centroids (one per cluster, distinct)."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float64)
    if k >= len(x):
        return np.arange(len(x))
    km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=300, random_state=seed32(seed)).fit(x)
    chosen: list[int] = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members) == 0:
            continue
        d = np.linalg.norm(x[members] - km.cluster_centers_[c], axis=1)
        for j in members[np.argsort(d)]:
            if j not in chosen:
                chosen.append(int(j))
                break
    rest = [i for i in np.argsort(np.linalg.norm(x - x.mean(0), axis=1)) if i not in chosen]
    chosen += [int(i) for i in rest[: k - len(chosen)]]  # only if K-means left clusters empty
    return np.asarray(chosen)


def greedy_k_center(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Farthest-point greedy k-center from a seeded random first point."""
    x = np.asarray(x, dtype=np.float64)
    if k >= len(x):
        return np.arange(len(x))
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(x)))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    for _ in range(k - 1):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(x - x[j], axis=1))
    return np.asarray(chosen)


def herding(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Herding: add the point that brings the running sum closest (L2) to (i+1) x the class mean."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(0)
    chosen: list[int] = []
    total = np.zeros_like(mu)
    avail = np.ones(len(x), dtype=bool)
    for i in range(min(k, len(x))):
        d = np.linalg.norm(total + x - (i + 1) * mu, axis=1)
        d[~avail] = np.inf
        j = int(np.argmin(d))
        chosen.append(j)
        avail[j] = False
        total += x[j]
    return np.asarray(chosen)


def random_subset(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(x), size=min(k, len(x)), replace=False))


SELECTORS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "random": random_subset,
    "kmeans_medoid": kmeans_medoid,
    "greedy_k_center": greedy_k_center,
    "herding": herding,
}
DETERMINISTIC = {"herding"}


def select_per_class(method: str, emb: np.ndarray, labels: np.ndarray, dpc: int, seed: int) -> np.ndarray:
    """Indices of `dpc` rows per class chosen by `method` on each class's embeddings."""
    fn = SELECTORS[method]
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(idx[fn(emb[idx], dpc, seed)])
    return np.concatenate(out)


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
