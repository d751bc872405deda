"""Coreset baselines on teacher features (herding, k-center), distribution matching and siamese DSA."""

from __future__ import annotations

import pytest
import torch

from distillkit.errors import UserError
from distillkit.image.augment import DSA
from distillkit.image.coresets import coreset, embed
from distillkit.image.dm import DMConfig, distill_dm, matching_loss
from distillkit.image.initial import init_images
from distillkit.nets import build_net

TINY_NET = {"width": 16, "depth": 2}


@pytest.mark.parametrize("method", ["herding", "kcenter", "random"])
def test_coreset_picks_real_images_per_class(digits, digits_pool, method):
    ds = coreset(digits, method, 3, digits_pool.nets[0])
    assert ds.images.shape == (30, *digits.shape)
    assert torch.bincount(ds.labels).tolist() == [3] * 10
    # every chosen image is a real training image of its class
    flat = digits.x_train.flatten(1)
    for img, y in zip(ds.images, ds.labels, strict=True):
        match = (flat == img.flatten()).all(1).nonzero().flatten()
        assert len(match) >= 1 and int(digits.y_train[match[0]]) == int(y)
    assert ds.soft_labels.shape == (30, 10) and ds.meta["method"] == method


def test_herding_set_mean_is_closer_to_the_class_mean_than_random(digits, digits_pool):
    net = digits_pool.nets[0]
    herd, rand = coreset(digits, "herding", 3, net), coreset(digits, "random", 3, net)

    def gap(ds):
        return sum(
            float(
                (
                    embed(net, ds.images[ds.labels == c]).mean(0)
                    - embed(net, digits.x_train[digits.class_indices(c)]).mean(0)
                ).norm()
            )
            for c in range(10)
        )

    assert gap(herd) < gap(rand)


def test_coreset_refuses_ipc_larger_than_a_class(digits, digits_pool):
    with pytest.raises(UserError, match="larger than class"):
        coreset(digits, "herding", 10_000, digits_pool.nets[0])


def test_siamese_dsa_transforms_batches_of_any_size_alike():
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for seed in range(12):  # covers every family
        a = DSA(generator=torch.Generator().manual_seed(seed), siamese=True)(x[:2])
        b = DSA(generator=torch.Generator().manual_seed(seed), siamese=True)(x)
        assert torch.allclose(a, b[:2], atol=1e-6)


def test_dm_lowers_the_matching_loss_and_resumes_identically(digits, digits_pool, tmp_path):
    cfg = DMConfig(ipc=2, iterations=8, lr_img=1.0, batch_real=64, net_options=TINY_NET, checkpoint_every=3)
    c, h, _ = digits.shape
    ds = distill_dm(digits, cfg, tmp_path / "full", label_net=digits_pool.nets[0])
    assert ds.images.shape == (20, *digits.shape) and ds.soft_labels.shape == (20, 10)

    def loss(images, labels):  # the DM objective on fixed nets, real batches and augmentations
        total = 0.0
        for t in range(5):
            torch.manual_seed(100 + t)
            net = build_net("convnet", c, 10, h, **TINY_NET)
            real = [digits.x_train[digits.class_indices(k)][:64] for k in range(10)]
            total += matching_loss(net, real, [images[labels == k] for k in range(10)], 7, t).item()
        return total

    init = ds.meta["dm_config"]
    x0, y0 = init_images(digits, DMConfig(**init))
    assert loss(ds.images, ds.labels) < loss(x0, y0)
    # stop after 3 iterations (a checkpoint), then resume to the end: same images as one uninterrupted run
    distill_dm(digits, cfg.model_copy(update={"iterations": 3}), tmp_path / "part")
    state = torch.load(tmp_path / "part" / "dm_state.pt", weights_only=False)
    state["config"] = cfg.model_dump()
    torch.save(state, tmp_path / "part" / "dm_state.pt")
    resumed = distill_dm(digits, cfg, tmp_path / "part")
    assert torch.equal(resumed.images, ds.images)


def test_dm_refuses_a_checkpoint_of_another_config(digits, tmp_path):
    cfg = DMConfig(ipc=1, iterations=2, batch_real=16, net_options=TINY_NET, checkpoint_every=1)
    distill_dm(digits, cfg, tmp_path)
    with pytest.raises(UserError, match="another DM config"):
        distill_dm(digits, cfg.model_copy(update={"lr_img": 2.0}), tmp_path)
