"""Coreset selection on feature vectors, one implementation each, shared by the image and text baselines.

- `herding` (Welling 2009): greedily add the point that keeps the running mean closest to the mean.
- `greedy_k_center`: the farthest-point greedy 2-approximation of the k-center problem, from a given first
  point (default: the point nearest the mean).
- `kmeans_medoid` (the DiLM paper's "K-centers"): K-means (k-means++, n_init 1, max_iter 300, seeded),
  then each cluster's member nearest its centroid.
- `random_indices`: a seeded uniform sample.

Every selector takes features (N, D), as a tensor or an array, and returns the chosen row indices as an
int64 array, in the order they were chosen. Herding and k-center compute in the features' own dtype (so
float32 image embeddings and float64 text embeddings select as they always did); ties go to the lowest index.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from distillkit.seeding import seed32

Features = np.ndarray | torch.Tensor


def as_tensor(x: Features) -> torch.Tensor:
    """Features as a CPU tensor of their own dtype."""
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))


def herding(features: Features, k: int) -> np.ndarray:
    """Indices of min(k, N) points whose running mean tracks the mean of `features` most closely."""
    x = as_tensor(features)
    mu = x.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    available = torch.ones(len(x), dtype=torch.bool)
    for step in range(1, min(k, len(x)) + 1):
        gap = ((mu - (total + x) / step) ** 2).sum(1)
        gap[~available] = float("inf")
        i = int(gap.argmin())
        chosen.append(i)
        available[i] = False
        total += x[i]
    return np.asarray(chosen, dtype=np.int64)


def greedy_k_center(features: Features, k: int, first: int | None = None) -> np.ndarray:
    """Greedy k-center: start at `first` (None: the point nearest the mean), then add the point farthest
    (squared L2) from those chosen, k points in all."""
    x = as_tensor(features)
    if first is None:
        first = int(((x - x.mean(0)) ** 2).sum(1).argmin())
    chosen = [first]
    dist = ((x - x[first]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = torch.minimum(dist, ((x - x[i]) ** 2).sum(1))
    return np.asarray(chosen, dtype=np.int64)


def kmeans_medoid(features: Features, k: int, seed: int) -> np.ndarray:
    """Indices of the members nearest to the K-means centroids (one per cluster, distinct); all N if k >= N."""
    from sklearn.cluster import KMeans

    x = np.asarray(as_tensor(features), dtype=np.float64)
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


def random_indices(n: int, k: int, seed: int) -> np.ndarray:
    """min(k, n) distinct indices below n, drawn uniformly with numpy's generator for `seed`, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def per_class(labels: np.ndarray, select: Callable[[np.ndarray], np.ndarray]) -> dict[int, np.ndarray]:
    """{class: the indices `select` chooses among that class's rows}, as indices into all rows, classes sorted.

    `select` receives a class's row indices and returns positions within them; e.g. per-class K-means
    medoids of embeddings `emb` are `per_class(labels, lambda rows: kmeans_medoid(emb[rows], k, seed))`.
    """
    labels = np.asarray(labels)
    out = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        out[int(c)] = rows[select(rows)]
    return out
