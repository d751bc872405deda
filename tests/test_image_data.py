"""Image datasets: offline loaders, splits, formats and options."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from distillkit.data.image_prep import apply_zca, fit_zca
from distillkit.data.image_sources import canonical_name
from distillkit.data.images import load_images
from distillkit.errors import UserError


def test_mnist_full_offline():
    d = load_images("mnist", val_size=1000)
    assert d.shape == (1, 28, 28)
    assert len(d.y_train) + len(d.y_val) == 60000 and len(d.y_test) == 10000
    assert torch.bincount(d.y_val).tolist() == [100] * 10  # class-stratified validation
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-2


def test_fashion_mnist_offline_with_pad_and_channels():
    d = load_images("fashion_mnist", size=32, channels=3, val_size=500, train_limit=2000)
    assert d.shape == (3, 32, 32)
    assert d.classes[0] == "T-shirt/top"
    assert len(d.y_train) == 2000 and torch.bincount(d.y_train).tolist() == [200] * 10
    assert torch.equal(d.x_train[:, 0], d.x_train[:, 1])  # the grey channel is repeated


def test_splits_are_seeded_and_disjoint(digits):
    again = load_images("digits", seed=0, val_size=200)
    other = load_images("digits", seed=1, val_size=200)
    assert torch.equal(digits.x_val, again.x_val)
    assert not torch.equal(digits.x_val, other.x_val)
    train_rows = {tuple(r.tolist()) for r in digits.x_train.flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in digits.x_val.flatten(1)[:50])


def _fake_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(np.arange(n) % 10)}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_cifar10_pickle_format(tmp_path):
    _fake_cifar(tmp_path)
    d = load_images("cifar10", tmp_path, val_size=10)
    assert d.shape == (3, 32, 32)
    assert len(d.y_train) == 90 and len(d.y_test) == 20
    assert d.classes == [f"c{i}" for i in range(10)]
    assert d.mean == [0.4914, 0.4822, 0.4465]  # the reference statistics


def test_zca_whitens(tmp_path):
    x = torch.randn(500, 1, 4, 4) @ torch.randn(4, 4)
    z = fit_zca(x, eps=0.0)
    w = apply_zca(x, z).reshape(500, -1)
    cov = torch.cov(w.T)
    assert torch.allclose(cov, torch.eye(16), atol=1e-3)


def test_image_folder_and_npz(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    d = load_images("image_folder", tmp_path, val_size=2)
    assert d.classes == ["cat", "dog"] and d.shape == (1, 8, 8) and len(d.y_test) == 6
    np.savez(
        tmp_path / "a.npz",
        x_train=np.zeros((20, 6, 6, 3)),
        y_train=np.arange(20) % 2,
        x_test=np.zeros((4, 6, 6, 3)),
        y_test=np.arange(4) % 2,
    )
    assert load_images("npz", tmp_path / "a.npz", val_size=2).shape == (3, 6, 6)


def test_bad_data_inputs(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'imagenot'"):
        canonical_name("imagenot")
    with pytest.raises(UserError, match="does not exist"):
        load_images("image_folder", tmp_path / "nope")
    with pytest.raises(UserError, match="cifar10 not found"):
        load_images("cifar10", tmp_path)
    np.savez(
        tmp_path / "bad.npz", x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_test=np.zeros((2, 2)), y_test=np.zeros(2)
    )
    with pytest.raises(UserError, match="expected \\(N,H,W\\)"):
        load_images("npz", tmp_path / "bad.npz")
