"""Coreset selectors: K-means medoid, greedy k-center, herding, random."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from distillkit.text.coreset import (
    SELECTORS,
    greedy_k_center,
    herding,
    kmeans_medoid,
    random_subset,
    select_per_class,
)


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    return np.concatenate([c + rng.normal(size=(25, 2)) for c in centers])


def test_kmeans_medoid_picks_the_member_nearest_each_centroid(blobs):
    idx = kmeans_medoid(blobs, 4, seed=0)
    km = KMeans(4, init="k-means++", n_init=1, max_iter=300, random_state=0).fit(blobs)
    expect = {
        int(
            np.flatnonzero(km.labels_ == c)[
                np.argmin(np.linalg.norm(blobs[km.labels_ == c] - km.cluster_centers_[c], axis=1))
            ]
        )
        for c in range(4)
    }
    assert set(idx.tolist()) == expect
    assert sorted(i // 25 for i in idx) == [0, 1, 2, 3]  # one per blob


def test_greedy_k_center_is_farthest_point(blobs):
    idx = greedy_k_center(blobs, 4, seed=1)
    assert len(set(idx.tolist())) == 4 and sorted(i // 25 for i in idx) == [0, 1, 2, 3]
    d = np.min(np.linalg.norm(blobs[:, None] - blobs[idx][None], axis=2), axis=1)
    # the covering radius of the greedy choice is within 2x of any other 4-subset tried
    rng = np.random.default_rng(0)
    best_random = min(
        np.min(np.linalg.norm(blobs[:, None] - blobs[rng.choice(100, 4, replace=False)][None], axis=2), axis=1).max()
        for _ in range(200)
    )
    assert d.max() <= 2 * best_random


def test_herding_tracks_the_mean_greedily():
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    # mean 3.25: the first pick is the point nearest 3.25 (2.0); the running sum should then approach 6.5:
    # 2+1=3 (off by 3.5), 2+0=2 (4.5), 2+10=12 (5.5), so 1.0 comes next
    assert herding(x, 2).tolist() == [2, 1]
    assert herding(x, 2).tolist() == herding(x, 2, seed=5).tolist()


def test_random_and_per_class_selection(blobs):
    labels = np.repeat([0, 1], 50)
    for name in SELECTORS:
        idx = select_per_class(name, blobs, labels, 3, seed=2)
        assert len(idx) == 6 and np.bincount(labels[idx]).tolist() == [3, 3] and len(set(idx.tolist())) == 6
    assert random_subset(blobs, 5, 1).tolist() == random_subset(blobs, 5, 1).tolist()
    assert random_subset(blobs, 5, 1).tolist() != random_subset(blobs, 5, 2).tolist()
