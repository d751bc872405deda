"""Shared fixtures: small real data (scikit-learn digits) and a tiny trained teacher pool."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DISTILLKIT_PROGRESS", "0")
torch.set_num_threads(2)

TINY_NET = {"width": 16, "depth": 2}


@pytest.fixture(scope="session")
def digits():
    from distillkit.data.images import load_images

    return load_images("digits", seed=0, val_size=200)


@pytest.fixture(scope="session")
def digits_pool(digits, tmp_path_factory):
    from distillkit.image.teacher import TeacherConfig, TeacherPool, train_pool

    out = tmp_path_factory.mktemp("pool")
    train_pool(digits, TeacherConfig(epochs=30, net_options=TINY_NET, num_teachers=2), out)
    return TeacherPool(out)
