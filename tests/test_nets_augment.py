"""Network registry and DSA augmentation."""

from __future__ import annotations

import pytest
import torch

from distillkit.errors import UserError
from distillkit.image.augment import DSA
from distillkit.nets import NETS, build_net


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_every_net_any_channels_and_size(name, shape):
    net = build_net(name, shape[0], 7, shape[1])
    out = net(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    out.sum().backward()
    # every input reaches the head: no layer may collapse its maps (e.g. instance norm of a 1x1 map is 0)
    net.eval()
    assert not torch.allclose(out[0], out[1], atol=1e-5)
    first = next(p for p in net.parameters() if p.grad is not None and p.ndim > 1)
    assert first.grad.abs().sum() > 0


def test_convnet_d4_for_64px_and_options():
    net = build_net("ConvNetD4", 3, 200, 64)
    assert net.classifier.in_features == 128 * 4 * 4
    net = build_net("convnet", 1, 10, 28, width=32, norm="batch", pooling="max")
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_arch():
    with pytest.raises(UserError, match="unknown architecture 'resnet99'"):
        build_net("resnet99", 1, 10, 28)


def test_dsa_is_seeded_and_differentiable():
    x = torch.randn(8, 3, 16, 16, requires_grad=True)
    a = DSA(generator=torch.Generator().manual_seed(3))(x)
    b = DSA(generator=torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_dsa_families_do_what_they_say():
    x = torch.rand(64, 1, 16, 16) + 1.0  # strictly positive so zeroed pixels show
    g = torch.Generator().manual_seed(0)
    dsa = DSA(generator=g)
    flipped = dsa.flip(x)
    same = (flipped == x).flatten(1).all(1)
    assert torch.equal(flipped[~same], x[~same].flip(3)) and 10 < int(same.sum()) < 54
    cut = dsa.cutout(x)
    zeros = (cut == 0).flatten(1).sum(1)
    assert int(zeros.max()) <= 64 and int(zeros.min()) >= 16  # an 8x8 square, clipped at borders
    shifted = dsa.crop(x)
    zeros = (shifted == 0).flatten(1).sum(1)
    assert int(zeros.max()) <= 2 * 16 + 2 * 16 - 4 and int(zeros.max()) > 0  # at most 2 rows and 2 columns
    assert dsa.rotate(x).shape == x.shape and dsa.scale(x).shape == x.shape
    col = dsa.color(x)
    assert not torch.allclose(col, x)
