"""The closed-form head gradient equals autograd, per sample and through the matching loss."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn

from distillkit.text.generator import Generator
from distillkit.text.gm import matching_loss
from distillkit.text.learner import Learner

TEXTS = [
    ("a tasty snack, would buy again",),
    ("stale and bland, never again",),
    ("fine I guess",),
    ("the coffee arrived broken and smelled off",),
    ("my dog loves these treats",),
]


@pytest.fixture(scope="module")
def learner():
    lrn = Learner.load("tiny-bert", 2, max_length=24, seed=3)
    lrn.reset(7)
    return lrn


def test_per_sample_head_grads_match_autograd(learner):
    labels = torch.tensor([0, 1, 1, 0, 1])
    feats = learner.features(TEXTS)
    closed = learner.per_sample_head_grads(feats, labels)
    for i in range(len(TEXTS)):
        auto = learner.autograd_head_grad([TEXTS[i]], labels[i : i + 1])
        torch.testing.assert_close(closed[i], auto, rtol=1e-5, atol=1e-6)
    assert closed.shape == (5, sum(p.numel() for p in learner.head_params()))
    assert closed.abs().sum() > 0


def test_weighted_head_grad_matches_autograd(learner):
    labels = torch.tensor([1] * 5)
    w = torch.softmax(torch.tensor([0.3, -1.0, 2.0, 0.1, 0.5]), 0)
    closed = w @ learner.per_sample_head_grads(learner.features(TEXTS), labels)
    auto = learner.autograd_head_grad(TEXTS, labels, weights=w)
    torch.testing.assert_close(closed, auto, rtol=1e-5, atol=1e-6)


def test_nonlinear_head_uses_head_only_autograd(learner):
    """A two-layer head goes through torch.func on cached features and still equals full autograd."""
    torch.manual_seed(0)
    hidden = learner.model.config.hidden_size
    head = nn.Sequential(nn.Linear(hidden, 8), nn.Tanh(), nn.Linear(8, 2))
    old = learner.model.classifier
    learner.model.classifier = head
    learner.head = head
    try:
        labels = torch.tensor([0, 1, 0, 1, 1])
        closed = learner.per_sample_head_grads(learner.features(TEXTS), labels)
        for i in (0, 3):
            auto = learner.autograd_head_grad([TEXTS[i]], labels[i : i + 1])
            torch.testing.assert_close(closed[i], auto, rtol=1e-5, atol=1e-6)
    finally:
        learner.model.classifier = old
        learner.head = old


def test_matching_loss_generator_gradient_closed_form_equals_autograd(learner):
    """The gradient reaching the generator is the same whichever way the head gradient is computed."""
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=24, seed=1)
    gen.model.eval()  # no dropout, so both passes see the same function
    real, syn = TEXTS[:3], TEXTS[2:]
    grads = {}
    for mode in ("closed_form", "autograd"):
        gen.model.zero_grad(set_to_none=True)
        loss, info = matching_loss(gen, learner, 1, real, syn, num_classes=2, head_grad=mode)
        loss.backward()
        grads[mode] = (loss.item(), torch.cat([p.grad.flatten() for p in gen.model.parameters() if p.grad is not None]))
        assert torch.isclose(info["weights"].sum(), torch.tensor(1.0))
    assert grads["closed_form"][0] == pytest.approx(grads["autograd"][0], rel=1e-5, abs=1e-7)
    assert grads["closed_form"][1].abs().sum() > 0
    torch.testing.assert_close(grads["closed_form"][1], grads["autograd"][1], rtol=1e-4, atol=1e-8)
