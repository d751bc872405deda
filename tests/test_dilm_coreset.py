"""Text coreset selectors: each method through the selector interface, per class, seeded."""

import numpy as np
import pytest

from distillkit.text.coreset import DETERMINISTIC, SELECTORS, seeded_k_center, select_per_class


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    return np.concatenate([c + rng.normal(size=(25, 2)) for c in centers])


def test_seeded_k_center_starts_from_a_seeded_point(blobs):
    idx = seeded_k_center(blobs, 4, seed=1)
    assert idx[0] == np.random.default_rng(1).integers(100)
    assert len(set(idx.tolist())) == 4 and sorted(i // 25 for i in idx) == [0, 1, 2, 3]
    assert seeded_k_center(blobs[:3], 5, seed=1).tolist() == [0, 1, 2]  # every row when k >= N


def test_random_and_per_class_selection(blobs):
    labels = np.repeat([0, 1], 50)
    for name in SELECTORS:
        idx = select_per_class(name, blobs, labels, 3, seed=2)
        assert len(idx) == 6 and np.bincount(labels[idx]).tolist() == [3, 3] and len(set(idx.tolist())) == 6
        other = select_per_class(name, blobs, labels, 3, seed=3)
        assert (idx.tolist() == other.tolist()) == (name in DETERMINISTIC), name
    random = SELECTORS["random"]
    assert random(blobs, 5, 1).tolist() == random(blobs, 5, 1).tolist()
    assert random(blobs, 5, 1).tolist() != random(blobs, 5, 2).tolist()
