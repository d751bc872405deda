"""Stage 2 (gradient matching): it lowers the matching loss, diverse mini-batches take one text from every
K-means cluster, and the representative teacher is made of per-class K-means medoids."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from distillkit.data.text import load_text_dataset, subsample
from distillkit.seeding import derive_seed, seed32
from distillkit.text.api import tiny_gm_config
from distillkit.text.generator import Generator
from distillkit.text.gm import GradientMatcher, build_representative_teacher, diverse_batches, matching_loss
from distillkit.text.learner import Learner

SEED = 5


@pytest.fixture(scope="module")
def setup():
    """40 real reviews, a MiniLM learner (shipped in an installed package) and its features as the real
    embeddings. The random `tiny-bert` gives every text nearly the same head input (cosine > 0.9999), which
    leaves nothing to cluster and a matching loss at float32 noise level (about 1e-7)."""
    train = subsample(load_text_dataset("fine_foods", seed=0).train, 40, 0)
    learner = Learner.load("minilm", 2, max_length=16, seed=0)
    emb = learner.features(train.texts).numpy()
    return train, learner, emb


def gm_config(**kw):
    base = dict(outer_loops=1, learner_steps=0, rt_sets=3, lr=1e-3, generator_dropout=False)
    return tiny_gm_config(**(base | kw))


def medoids_by_brute_force(x: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> set[int]:
    """Per cluster, the member closest to its center."""
    out = set()
    for k in range(len(centers)):
        inside = np.flatnonzero(labels == k)
        out.add(int(inside[np.argmin(np.linalg.norm(x[inside] - centers[k], axis=1))]))
    return out


# ---- representative teacher -------------------------------------------------------------------------------
def test_representative_teacher_is_per_class_medoids_of_well_separated_blobs():
    """Ground truth without K-means: 3 far-apart blobs per class, so the clusters are the blobs, each centroid
    is its blob's mean, and the medoid is the blob member closest to that mean."""
    rng = np.random.default_rng(0)
    x, labels, blob = [], [], []
    for c in range(2):
        for b, size in enumerate((5, 7, 4)):
            center = np.array([100.0 * b, 100.0 * c, 0.0])
            x.append(center + rng.normal(size=(size, 3)))
            labels += [c] * size
            blob += [3 * c + b] * size
    x, labels, blob = np.concatenate(x), np.asarray(labels), np.asarray(blob)
    order = rng.permutation(len(x))  # classes interleaved, so class-local and global indices differ
    x, labels, blob = x[order], labels[order], blob[order]
    expect = {}
    for c in range(2):
        picked = set()
        for b in range(3 * c, 3 * c + 3):
            members = np.flatnonzero(blob == b)
            picked.add(int(members[np.argmin(np.linalg.norm(x[members] - x[members].mean(0), axis=1))]))
        expect[c] = picked
    rt = build_representative_teacher(x, labels, 3, sets=2)
    assert len(rt) == 2
    for per_class in rt:
        assert set(per_class) == {0, 1}
        for c in (0, 1):
            assert set(per_class[c].tolist()) == expect[c] and len(per_class[c]) == 3


def test_representative_teacher_matches_sklearn_kmeans_medoids(setup):
    train, learner, emb = setup
    cfg = gm_config()
    m = GradientMatcher(Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0), learner, train, emb, cfg, SEED)
    assert len(m.rt) == cfg.rt_sets
    for t, per_class in enumerate(m.rt):
        for c in (0, 1):
            idx = per_class[c]
            assert len(idx) == cfg.real_batch and len(set(idx.tolist())) == cfg.real_batch
            assert (train.labels[idx] == c).all()  # indices into the whole training set, of class c
            members = np.flatnonzero(train.labels == c)
            x = emb[members].astype(np.float64)
            km = KMeans(cfg.real_batch, init="k-means++", n_init=1, max_iter=300, random_state=t).fit(x)
            expect = {int(members[i]) for i in medoids_by_brute_force(x, km.labels_, km.cluster_centers_)}
            assert set(idx.tolist()) == expect, (t, c)
    # the sets differ by seed, and step s uses set s mod rt_sets
    assert any(set(m.rt[0][c].tolist()) != set(m.rt[1][c].tolist()) for c in (0, 1))
    for step in range(5):
        m.step = step
        for c in (0, 1):
            assert m.real_indices(c).tolist() == m.rt[step % cfg.rt_sets][c].tolist()
            assert m.real_batch(c) == [train.texts[i] for i in m.rt[step % cfg.rt_sets][c]]


# ---- diverse mini-batches ----------------------------------------------------------------------------------
def test_diverse_batches_take_one_member_of_every_blob_in_turn():
    rng = np.random.default_rng(1)
    sizes = (3, 5, 8, 4)
    x = np.concatenate([np.array([50.0 * b, -30.0 * b]) + rng.normal(size=(n, 2)) for b, n in enumerate(sizes)])
    blob = np.repeat(np.arange(4), sizes)
    order = rng.permutation(len(x))
    x, blob = x[order], blob[order]
    batches = diverse_batches(x, 4, 8, seed=3)
    assert len(batches) == 8
    for b in batches:
        assert sorted(blob[b].tolist()) == [0, 1, 2, 3]  # one member of every blob
    for k, n in enumerate(sizes):
        members = np.flatnonzero(blob == k)  # in index order
        drawn = [int(next(i for i in b if blob[i] == k)) for b in batches]
        assert drawn == [int(members[j % n]) for j in range(8)]  # batch j takes member j mod size


def test_diverse_minibatches_of_each_class_cover_every_kmeans_cluster(setup, monkeypatch):
    train, learner, emb = setup
    cfg = gm_config(dms_interval=2, inner_loops=3)  # 6 batches of 4 per class from a pool of 24
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    n_pool = cfg.syn_batch * cfg.dms_interval * cfg.inner_loops
    # a stand-in for sampling (seconds per call on 2 cores): class c's pool is 24 distinct training texts
    pools = {c: [train.texts[i] for i in np.flatnonzero(train.labels == c)] for c in (0, 1)}
    pools[1] = pools[1] + [(f"{t[0]} (again {k})",) for k, t in enumerate(pools[1])]
    calls = []

    def sample(label, n, *, seed, **kw):
        calls.append((label, n, seed))
        return pools[label][:n]

    monkeypatch.setattr(gen, "sample", sample)
    m = GradientMatcher(gen, learner, train, emb, cfg, SEED)
    learner.reset(derive_seed(SEED, "gm_learner_reset", 0))
    m.rebuild_dms()
    assert calls == [(c, n_pool, derive_seed(SEED, "gm_pool", 0, c)) for c in (0, 1)]
    for c in (0, 1):
        pool = pools[c][:n_pool]
        assert len(set(pool)) == n_pool
        feats = learner.features(pool).numpy()
        lab = (
            KMeans(cfg.syn_batch, n_init=1, random_state=seed32(derive_seed(SEED, "gm_diverse", 0, c)))
            .fit(feats)
            .labels_
        )
        assert len(m.dms[c]) == cfg.dms_interval * cfg.inner_loops
        for batch in m.dms[c]:
            assert len(batch) == cfg.syn_batch and all(t in pool for t in batch)
            assert sorted(lab[pool.index(t)] for t in batch) == list(range(cfg.syn_batch)), c
        # the generator steps of an outer loop walk through the batches
        for j in range(cfg.dms_interval * cfg.inner_loops):
            m.ol, m.step = j // cfg.inner_loops, j
            assert m.syn_batch(c) == m.dms[c][j]


# ---- stage 2 lowers the matching loss -------------------------------------------------------------------------
def test_stage2_steps_lower_the_matching_loss_on_a_fixed_batch(setup):
    train, learner, emb = setup
    # one outer loop, no learner steps: the learner stays the one reset for outer loop 0; one real batch
    cfg = gm_config(inner_loops=3, rt_sets=1, diverse_minibatch=False)
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=16, seed=0)
    m = GradientMatcher(gen, learner, train, emb, cfg, SEED)
    real = {c: m.real_batch(c) for c in (0, 1)}
    # the "generated" batch is held fixed too: 6 texts of each class that are not in its real batch
    syn = {c: [t for i, t in enumerate(train.texts) if train.labels[i] == c and t not in real[c]][:6] for c in (0, 1)}
    m.syn_batch = lambda c: syn[c]

    def loss_now() -> tuple[float, dict]:
        learner.reset(derive_seed(SEED, "gm_learner_reset", 0))  # the learner of outer loop 0
        gen.model.eval()
        with torch.no_grad():
            parts = [matching_loss(gen, learner, c, real[c], syn[c], 2) for c in (0, 1)]
        return sum(p[0].item() for p in parts), {c: parts[c][1]["weights"] for c in (0, 1)}

    before, w_before = loss_now()
    assert before > 0.01  # well above float noise
    history = m.run(progress=False)
    after, w_after = loss_now()
    losses = [h["loss"] for h in history] + [after]
    assert [h["step"] for h in history] == [0, 1, 2]
    assert losses[0] == pytest.approx(before, rel=1e-5)  # the first step sees the starting loss
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses  # every step lowers it
    assert after < 0.98 * before, losses
    for c in (0, 1):  # the generator moved its weights over the fixed texts
        assert (w_after[c] - w_before[c]).abs().max() > 1e-4
