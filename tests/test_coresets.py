"""Shared coreset selections: each algorithm's behaviour, and the same picks as the code they replaced.

tests/data/coreset_selections.json holds the selections of the earlier image (torch, float32) and text
(numpy, float64) implementations on real data: scikit-learn digits, as pixels and as a seeded projection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from distillkit.coresets import greedy_k_center, herding, kmeans_medoid, per_class, random_indices
from distillkit.text.coreset import select_per_class
from distillkit.text.gm import build_representative_teacher

RECORDED = json.loads((Path(__file__).parent / "data" / "coreset_selections.json").read_text())


@pytest.fixture(scope="module")
def features(digits):
    pixels = digits.x_train.flatten(1)
    w = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    return {"pixels": pixels, "projected": torch.relu(pixels @ w)}, digits.y_train


@pytest.mark.parametrize("name", ["pixels", "projected"])
def test_image_selections_are_the_recorded_ones(features, name):
    feats, labels = features
    f = feats[name]
    per = [f[labels == c] for c in range(10)]
    want = RECORDED["image"][name]
    assert [herding(x, 10).tolist() for x in per] == want["herding"]
    assert [greedy_k_center(x, 10).tolist() for x in per] == want["k_center"]
    assert herding(per[0][:6], 6).tolist() == want["herding_all"]
    assert greedy_k_center(per[0][:6], 6).tolist() == want["k_center_all"]


@pytest.mark.parametrize("name", ["pixels", "projected"])
def test_text_selections_are_the_recorded_ones(features, name):
    feats, labels = features
    emb, lab = feats[name].numpy().astype(np.float64), labels.numpy()
    want = RECORDED["text"][name]
    for method in ("random", "kmeans_medoid", "greedy_k_center", "herding"):
        for seed in (0, 3):
            assert select_per_class(method, emb, lab, 5, seed).tolist() == want[method][str(seed)], (method, seed)
    assert herding(emb[:6], 8).tolist() == want["all"]["herding"]
    assert kmeans_medoid(emb[:6], 6, 1).tolist() == want["all"]["kmeans_medoid"]
    # per-class K-means medoids with seed t, as DiLM's representative teacher draws them
    for t, recorded in enumerate(want["representative_teacher"]):
        medoids = per_class(lab, lambda rows, t=t: kmeans_medoid(emb[rows], 3, t))
        assert {str(c): v.tolist() for c, v in medoids.items()} == recorded
    gm = build_representative_teacher(emb, lab, 3, 2)
    assert [{str(c): v.tolist() for c, v in r.items()} for r in gm] == want["representative_teacher"]


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    return np.concatenate([c + rng.normal(size=(25, 2)) for c in centers])


def test_herding_tracks_the_mean_better_than_random():
    feats = torch.randn(400, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.5, 3, 8)
    picked = torch.from_numpy(herding(feats, 10))
    assert len(set(picked.tolist())) == 10
    gap = (feats[picked].mean(0) - feats.mean(0)).norm()
    random_gaps = [
        (feats[torch.randperm(400, generator=torch.Generator().manual_seed(s))[:10]].mean(0) - feats.mean(0)).norm()
        for s in range(50)
    ]
    assert gap < min(random_gaps)


def test_herding_tracks_the_mean_greedily():
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    # mean 3.25: the first pick is the point nearest 3.25 (2.0); the running sum should then approach 6.5:
    # 2+1=3 (off by 3.5), 2+0=2 (4.5), 2+10=12 (5.5), so 1.0 comes next
    assert herding(x, 2).tolist() == [2, 1]
    assert herding(x, 10).tolist() == [2, 1, 3, 0]  # then 3 + 10 is nearest 9.75; at most every point, once


def test_k_center_covers_outliers():
    feats = torch.cat(
        [
            torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * 0.1,
            torch.tensor([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]),
        ]
    )
    picked = set(greedy_k_center(feats, 4).tolist())
    assert {200, 201, 202} <= picked  # the three far points are always chosen
    # greedy 2-approximation: every point lies within the covering radius of the chosen set
    chosen = feats[list(picked)]
    radius = torch.cdist(feats, chosen).min(1).values.max()
    assert radius < 1.0


def test_greedy_k_center_is_farthest_point_from_any_start(blobs):
    for first in (None, 7, 60):
        idx = greedy_k_center(blobs, 4, first=first)
        assert first is None or idx[0] == first
        assert len(set(idx.tolist())) == 4 and sorted(i // 25 for i in idx) == [0, 1, 2, 3]
    d = np.min(np.linalg.norm(blobs[:, None] - blobs[idx][None], axis=2), axis=1)
    # the covering radius of the greedy choice is within 2x of any other 4-subset tried
    rng = np.random.default_rng(0)
    best_random = min(
        np.min(np.linalg.norm(blobs[:, None] - blobs[rng.choice(100, 4, replace=False)][None], axis=2), axis=1).max()
        for _ in range(200)
    )
    assert d.max() <= 2 * best_random


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
    assert kmeans_medoid(torch.from_numpy(blobs), 4, seed=0).tolist() == idx.tolist()  # tensors alike


def test_random_indices_are_seeded_and_per_class_maps_back_to_all_rows():
    assert random_indices(100, 5, 1).tolist() == random_indices(100, 5, 1).tolist()
    assert random_indices(100, 5, 1).tolist() != random_indices(100, 5, 2).tolist()
    assert random_indices(3, 5, 0).tolist() == [0, 1, 2]
    labels = np.array([1, 0, 1, 0, 1])
    chosen = per_class(labels, lambda rows: np.array([len(rows) - 1]))
    assert list(chosen) == [0, 1] and chosen[0].tolist() == [3] and chosen[1].tolist() == [4]
