"""MTT / TESLA: gradients against finite differences and autograd, TESLA's exactness, resume, experts."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from distillkit.errors import UserError
from distillkit.image.experts import ExpertConfig, Experts, flat_params, train_experts
from distillkit.image.initial import init_images
from distillkit.image.memory import PeakMemory
from distillkit.image.mtt import FlatNet, MTTConfig, distill_mtt, matching_gradient, student_steps
from distillkit.nets import build_net
from distillkit.seeding import seeded

TINY_NET = {"width": 8, "depth": 2}
TINY_EXPERTS = {"num_experts": 2, "epochs": 4, "lr": 0.05, "net_options": TINY_NET}
CASE = {"ipc": 2, "syn_steps": 3, "expert_epochs": 2, "max_start_epoch": 2, "batch_syn": 8}


@pytest.fixture(scope="module")
def experts(digits, tmp_path_factory) -> Experts:
    out = tmp_path_factory.mktemp("experts")
    train_experts(digits, ExpertConfig(**TINY_EXPERTS), out)
    return Experts(out)


def case(digits, experts, dtype=torch.float64, **overrides):
    """A fixed matching problem: tiny student, 20 real images, expert 0 from epoch 1 to 3."""
    cfg = MTTConfig(**{**CASE, **overrides})
    images, labels = init_images(digits, cfg)
    start, target = experts.pair(0, 1, cfg.expert_epochs)
    student = FlatNet(experts.build_net().to(dtype))
    return student, images.to(dtype), labels, torch.tensor(0.02, dtype=dtype), start.to(dtype), target.to(dtype), cfg


def test_unrolled_gradient_matches_finite_differences(digits, experts):
    student, x, y, lr, start, target, cfg = case(digits, experts)
    grad_x, grad_lr, loss = matching_gradient(student, x, y, lr, start, target, cfg, t=5)
    assert 0 < loss < 10 and grad_x.abs().sum() > 0

    def loss_at(xx, ll):
        return matching_gradient(student, xx, y, ll, start, target, cfg, t=5)[2]

    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    eps = 1e-6
    fd_x = (loss_at(x + eps * v, lr) - loss_at(x - eps * v, lr)) / (2 * eps)
    assert fd_x == pytest.approx(float((grad_x * v).sum()), rel=1e-5)
    eps_lr = 1e-8
    fd_lr = (loss_at(x, lr + eps_lr) - loss_at(x, lr - eps_lr)) / (2 * eps_lr)
    assert fd_lr == pytest.approx(float(grad_lr), rel=1e-5)


def test_unrolled_gradient_matches_a_hand_unrolled_loop(digits, experts):
    """Three plain SGD steps on the full set (no augmentation), written out: autograd through them agrees."""
    student, x, y, lr, start, target, cfg = case(digits, experts, batch_syn=None, dsa_strategy="")
    grad_x, grad_lr, loss = matching_gradient(student, x, y, lr, start, target, cfg, t=0)
    xx, ll = x.clone().requires_grad_(True), lr.clone().requires_grad_(True)
    net = experts.build_net().to(x.dtype)
    params = dict(net.named_parameters())
    theta = start.clone().requires_grad_(True)
    for _ in range(3):
        chunks, offset = {}, 0
        for name, p in params.items():
            chunks[name] = theta[offset : offset + p.numel()].view(p.shape)
            offset += p.numel()
        out = torch.func.functional_call(net, chunks, (xx,))
        g = torch.autograd.grad(F.cross_entropy(out, y), theta, create_graph=True)[0]
        theta = theta - ll * g
    hand = ((theta - target) ** 2).sum() / ((start - target) ** 2).sum()
    hx, hlr = torch.autograd.grad(hand, (xx, ll))
    assert loss == pytest.approx(hand.item(), rel=1e-10)
    torch.testing.assert_close(grad_x, hx, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(grad_lr, hlr, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("label_mode", ["hard", "teacher_logits"])
def test_constant_memory_equals_unrolled_for_one_step(digits, experts, label_mode):
    student, x, y, lr, start, target, cfg = case(digits, experts, syn_steps=1)
    targets = student(target, x).detach() if label_mode == "teacher_logits" else y
    unrolled = matching_gradient(student, x, targets, lr, start, target, cfg, t=3)
    constant = matching_gradient(
        student, x, targets, lr, start, target, cfg.model_copy(update={"gradient": "constant_memory"}), t=3
    )
    assert unrolled[0].abs().sum() > 0
    torch.testing.assert_close(constant[0], unrolled[0], rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(constant[1], unrolled[1], rtol=1e-9, atol=1e-14)
    assert constant[2] == pytest.approx(unrolled[2], rel=1e-12)


def test_constant_memory_is_teslas_first_order_gradient(digits, experts):
    """For N > 1, TESLA's gradient is that of the loss with the student's trajectory points held fixed.

    The loss value is exact; the gradient differs from the unrolled one by the dropped Hessian terms.
    """
    student, x, y, lr, start, target, cfg = case(digits, experts, gradient="constant_memory")
    grad_x, grad_lr, loss = matching_gradient(student, x, y, lr, start, target, cfg, t=7)
    xx, ll = x.clone().requires_grad_(True), lr.clone().requires_grad_(True)
    theta, grads = start.clone(), []
    for idx, dsa in student_steps(cfg, len(x), 7):
        fixed = theta.detach().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(student(fixed, dsa(xx[idx])), y[idx]), fixed, create_graph=True)[0]
        grads.append(g)
        theta = (fixed - lr * g).detach()
    theta_n = start - ll * torch.stack(grads).sum(0)
    surrogate = ((theta_n - target) ** 2).sum() / ((start - target) ** 2).sum()
    sx, slr = torch.autograd.grad(surrogate, (xx, ll))
    torch.testing.assert_close(grad_x, sx, rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(grad_lr, slr, rtol=1e-8, atol=1e-14)

    ux, ulr, uloss = matching_gradient(
        student, x, y, lr, start, target, cfg.model_copy(update={"gradient": "unrolled"}), t=7
    )
    assert loss == pytest.approx(uloss, rel=1e-12)
    assert ((ux - grad_x).norm() / ux.norm()).item() > 1e-4  # not the exact gradient for N = 3
    cos = float((ux * grad_x).sum() / (ux.norm() * grad_x.norm()))
    assert cos > 0.9  # ... but close to it


@pytest.mark.parametrize("gradient", ["unrolled", "constant_memory"])
def test_image_updates_lower_the_matching_loss(digits, experts, gradient):
    student, x, y, lr, start, target, cfg = case(digits, experts, dtype=torch.float32, gradient=gradient, syn_steps=4)
    losses = []
    for _ in range(6):
        gx, _, loss = matching_gradient(student, x, y, lr, start, target, cfg, t=2)
        losses.append(loss)
        x = x - 0.5 * gx / gx.abs().max()
    assert losses[-1] < 0.9 * losses[0], losses


def test_constant_memory_does_not_grow_with_syn_steps():
    net = build_net("convnet", 1, 10, 8, width=16, depth=2)
    student, theta = FlatNet(net), flat_params(net)
    target = theta + 0.01 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(100, 1, 8, 8), torch.arange(100) % 10
    peaks = {}
    for gradient in ["unrolled", "constant_memory"]:
        for n in [2, 12]:
            cfg = MTTConfig(ipc=10, syn_steps=n, gradient=gradient, dsa_strategy="")
            matching_gradient(student, x, y, torch.tensor(0.01), theta, target, cfg, t=0)  # warm-up
            with PeakMemory() as pm:
                matching_gradient(student, x, y, torch.tensor(0.01), theta, target, cfg, t=0)
            peaks[gradient, n] = pm.peak_mb
    assert peaks["unrolled", 12] > 3 * peaks["unrolled", 2], peaks
    assert peaks["constant_memory", 12] < 1.5 * peaks["constant_memory", 2] + 2, peaks
    assert peaks["constant_memory", 12] < peaks["unrolled", 12] / 3, peaks


class Stop(Exception):
    pass


@pytest.mark.parametrize("gradient,label_mode", [("unrolled", "hard"), ("constant_memory", "teacher_logits")])
def test_interrupted_run_resumes_to_the_same_images(digits, experts, tmp_path, gradient, label_mode):
    cfg = MTTConfig(
        **{
            **CASE,
            "iterations": 7,
            "checkpoint_every": 2,
            "gradient": gradient,
            "label_mode": label_mode,
            "lr_img": 10.0,
        }
    )
    label_net = experts.build_net()

    def stop_at_4(t, state):
        if t == 4:
            raise Stop

    with pytest.raises(Stop):
        distill_mtt(digits, experts, cfg, tmp_path / "run", on_iteration=stop_at_4)
    saved = torch.load(tmp_path / "run" / "mtt_state.pt", weights_only=False)
    assert saved["t"] == 4 and len(saved["history"]) == 4
    resumed = distill_mtt(digits, experts, cfg, tmp_path / "run", label_net=label_net)
    straight = distill_mtt(digits, experts, cfg, tmp_path / "straight", label_net=label_net)
    assert torch.equal(resumed.images, straight.images)
    assert resumed.meta["syn_lr"] == straight.meta["syn_lr"]
    init, _ = init_images(digits, cfg)
    assert not torch.allclose(resumed.images, init)  # the images did move
    assert resumed.soft_labels.shape == (20, 10) and resumed.labels.tolist() == straight.labels.tolist()
    assert resumed.meta["method"] == ("tesla" if gradient == "constant_memory" else "mtt")
    assert {
        "dataset",
        "classes",
        "ipc",
        "mean",
        "std",
        "data_options",
        "arch",
        "mtt_config",
        "distill_seconds",
        "syn_lr",
    } <= set(resumed.meta)
    other = distill_mtt(digits, experts, cfg.model_copy(update={"seed": 1}))
    assert not torch.equal(other.images, straight.images)


def test_experts_for_other_data_or_broken_files_are_one_line_errors(digits, experts, tmp_path):
    for other in [
        dataclasses.replace(digits, name="mnist"),
        dataclasses.replace(digits, x_train=digits.x_train.repeat(1, 3, 1, 1)),
    ]:
        with pytest.raises(UserError) as e:
            distill_mtt(other, experts, MTTConfig(**CASE, iterations=1))
        assert "other data" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="need trajectories of 5 epochs"):
        distill_mtt(digits, experts, MTTConfig(**{**CASE, "max_start_epoch": 4}, iterations=1))
    with pytest.raises(UserError, match="no expert pool at"):
        Experts(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(experts.files[0].parent, broken)
    (broken / "expert_1.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="expert_1.safetensors is missing or damaged"):
        Experts(broken)
    (broken / "experts.json").write_text("{")
    with pytest.raises(UserError, match="not a pool manifest"):
        Experts(broken)


def test_expert_training_records_trajectories_and_resume_skips_finished(digits, tmp_path, monkeypatch):
    import distillkit.image.experts as experts_module

    cfg = ExpertConfig(**{**TINY_EXPERTS, "num_experts": 1, "epochs": 2})
    train_experts(digits, cfg, tmp_path)
    first = (tmp_path / "expert_0.safetensors").read_bytes()
    pool = Experts(tmp_path)
    with seeded(cfg.seed, "expert_init", 0):
        init = flat_params(build_net("convnet", 1, 10, 8, **TINY_NET))
    start, end = pool.pair(0, 0, 2)
    assert torch.equal(start, init) and not torch.allclose(start, end)
    assert pool.meta["num_params"] == init.numel() and pool.epochs == 2

    calls = []
    real = experts_module.train_expert

    def spy(data, cfg, index, device="cpu"):
        calls.append(index)
        return real(data, cfg, index, device)

    monkeypatch.setattr(experts_module, "train_expert", spy)
    train_experts(digits, cfg.model_copy(update={"num_experts": 3}), tmp_path)
    assert calls == [1, 2]
    assert (tmp_path / "expert_0.safetensors").read_bytes() == first
    assert len(json.loads((tmp_path / "experts.json").read_text())["experts"]) == 3
    train_experts(digits, cfg.model_copy(update={"num_experts": 3}), tmp_path)
    assert calls == [1, 2]
    with pytest.raises(UserError, match="other settings"):
        train_experts(digits, cfg.model_copy(update={"epochs": 3}), tmp_path)


def test_cli_experts(tmp_path):
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0"}
    cmd = [
        sys.executable,
        "-c",
        "from distillkit.cli.distill import main; main()",
        "image",
        "experts",
        "--dataset",
        "digits",
        "--num-experts",
        "1",
        "--epochs",
        "2",
        "--width",
        "8",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "expert_0.safetensors" in proc.stdout and (tmp_path / "experts.json").exists()
    assert Experts(tmp_path).epochs == 2


def test_a_diverging_run_stops_with_one_line_instead_of_writing_nan_images(digits, experts, tmp_path):
    from distillkit.image.mtt import check_diverged

    check_diverged("mtt", 3, 0.5, 0.01)  # a finite loss and a positive lr go on
    for loss, lr in ((float("nan"), 0.01), (0.5, -0.02), (float("inf"), 0.01)):
        with pytest.raises(UserError, match="MTT diverged at iteration 3"):
            check_diverged("mtt", 3, loss, lr)
    cfg = MTTConfig(**{**CASE, "iterations": 5, "lr_lr": 1e6})  # one step throws the learnable lr far off
    with pytest.raises(UserError, match=r"diverged at iteration \d+: .* lower mtt.lr_lr"):
        distill_mtt(digits, experts, cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "distilled.safetensors").exists()
