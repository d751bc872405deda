"""Evaluation runs trained together (eval.batched) follow their sequential twins: same init, data order,
augmentation draws and optimizer steps, so the same networks up to float rounding.

In float64 the grouped and the one-by-one computations agree to rounding (1e-16), and no ReLU sits close enough
to its kink for that rounding to flip it, so twins must agree to 1e-9 after whole runs: a wrong batch order,
augmentation draw, loss scale, weight decay or momentum would move them by far more. In float32 rounding
differences (1e-7) stay near 1e-5 for a few steps.
"""

from __future__ import annotations

import pytest
import torch

from distillkit.image.evaluate import EvalConfig, eval_nets, evaluate_set, random_subset, train_runs
from distillkit.nets import build_net
from distillkit.nets.grouped import GroupedConvNet

NET = {"width": 8, "depth": 2}
CASES = [("hard", "ce", True), ("hard", "ce", False), ("soft", "l1", True), ("soft", "kl", False)]


def twins(digits, cfg: EvalConfig, dtype: torch.dtype, device: str = "cpu", ipc: int = 3) -> dict:
    """The same runs trained one after another and together on a random subset of digits (soft: logits)."""
    x, y = random_subset(digits, ipc, seed=0)
    soft = torch.randn(len(x), digits.num_classes, generator=torch.Generator().manual_seed(1)) * 3
    targets = (soft if cfg.label_mode == "soft" else y).to(device)
    x = x.to(device, dtype)
    if targets.is_floating_point():
        targets = targets.to(dtype)
    out = {"x": x, "targets": targets, "init": [n.to(dtype) for n in eval_nets(cfg, digits, device)]}
    for batched in (False, True):
        nets = [n.to(dtype) for n in eval_nets(cfg, digits, device)]
        out[batched] = nets, train_runs(nets, x, targets, cfg.model_copy(update={"batched": batched}))
    return out


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.flatten() for t in net.state_dict().values() if t.is_floating_point()])


def rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float((flat(a) - flat(b)).norm() / flat(a).norm())


def params(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@torch.no_grad()
def logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The outputs in evaluation mode, in the network's own dtype (`predict` returns float32)."""
    net.eval()
    return net(x.to(next(net.parameters()).dtype))


def label_loss_of(net, x, targets, cfg) -> float:
    from distillkit.image.losses import label_loss

    return float(label_loss(cfg.loss, logits(net, x), targets))


@pytest.mark.parametrize(("label", "loss", "dsa"), CASES)
def test_batched_runs_follow_their_sequential_twins_float64(digits, label, loss, dsa):
    cfg = EvalConfig(net_options=NET, runs=3, epochs=12, lr=0.05, batch_size=8, label_mode=label, loss=loss, dsa=dsa)
    t = twins(digits, cfg, torch.float64)
    (seq, seq_together), (bat, bat_together) = t[False], t[True]
    assert (seq_together, bat_together) == (False, True)
    for s, b, init in zip(seq, bat, t["init"], strict=True):
        assert rel_diff(init, s) > 1e-2  # 48 steps moved the weights: the comparison below is not vacuous
        assert rel_diff(s, b) < 1e-9
        assert label_loss_of(s, t["x"], t["targets"], cfg) == pytest.approx(
            label_loss_of(b, t["x"], t["targets"], cfg), rel=1e-9
        )
        assert torch.equal(logits(s, digits.x_test).argmax(1), logits(b, digits.x_test).argmax(1))
    assert rel_diff(bat[0], bat[1]) > 1e-2  # each run its own seed: twins are not each other's copies


@pytest.mark.parametrize(("label", "loss", "dsa"), CASES)
def test_batched_runs_follow_their_sequential_twins_float32_for_a_few_steps(digits, label, loss, dsa):
    cfg = EvalConfig(net_options=NET, runs=3, epochs=2, lr=0.05, batch_size=8, label_mode=label, loss=loss, dsa=dsa)
    t = twins(digits, cfg, torch.float32)
    for s, b, init in zip(t[False][0], t[True][0], t["init"], strict=True):
        assert rel_diff(init, s) > 1e-3
        assert rel_diff(s, b) < 1e-5


def test_batch_norm_statistics_follow_the_twins(digits):
    cfg = EvalConfig(arch="convnetbn", net_options=NET, runs=2, epochs=6, batch_size=8, label_mode="hard", loss="ce")
    t = twins(digits, cfg, torch.float64)
    for s, b in zip(t[False][0], t[True][0], strict=True):
        stats = [k for k in s.state_dict() if "running" in k]
        assert stats and all(torch.allclose(s.state_dict()[k], b.state_dict()[k], rtol=1e-9) for k in stats)
        assert int(s.state_dict()["features.1.num_batches_tracked"]) == 6 * 4  # 30 images, batches of 8
        assert int(b.state_dict()["features.1.num_batches_tracked"]) == 6 * 4


@pytest.mark.parametrize("options", [{"norm": "instance"}, {"norm": "batch"}, {"norm": "none", "pooling": "max"}])
def test_grouped_network_computes_each_network_and_writes_back(options):
    nets = [build_net("convnet", 3, 5, 12, width=4, depth=2, **options).double() for _ in range(3)]
    x = torch.randn(3, 7, 3, 12, 12, dtype=torch.float64)
    group = GroupedConvNet(nets)
    torch.testing.assert_close(group(x), torch.stack([n(xi) for n, xi in zip(nets, x, strict=True)]))
    with torch.no_grad():
        for p in group.parameters():
            p.add_(1.0)
    before = [params(n) for n in nets]
    group.write_back(nets)
    for n, b in zip(nets, before, strict=True):
        torch.testing.assert_close(params(n), b + 1.0)
    torch.testing.assert_close(group(x), torch.stack([n(xi) for n, xi in zip(nets, x, strict=True)]))


def test_evaluator_records_whether_runs_trained_together(digits):
    x, y = random_subset(digits, 2, seed=0)
    cfg = EvalConfig(net_options=NET, runs=2, epochs=3, label_mode="hard", loss="ce")
    together = evaluate_set(x, y, None, digits, cfg)
    apart = evaluate_set(x, y, None, digits, cfg.model_copy(update={"batched": False}))
    mlp = evaluate_set(x, y, None, digits, cfg.model_copy(update={"arch": "mlp", "net_options": {"width": 16}}))
    assert (together["batched"], apart["batched"], mlp["batched"]) == (True, False, False)
    assert together["runs"] == apart["runs"]
    assert EvalConfig().batched is True and "batched" in EvalConfig().model_dump()
