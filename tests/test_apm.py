"""APM: segment-gradient equivalence, schedules, determinism, the image step, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch

from distillkit.image.apm import APMConfig, distill, image_gradient, train_proxy
from distillkit.image.distilled import DistilledSet
from distillkit.image.initial import init_images

TINY_APM = {
    "ipc": 3,
    "iterations": 9,
    "student_epochs": 6,
    "num_checkpoints": 2,
    "refresh_every": 3,
    "lr_img": 5.0,
    "lr_net": 0.05,
}


@pytest.fixture(scope="module")
def proxy_setup(digits, digits_pool):
    cfg = APMConfig(**TINY_APM)
    images, labels = init_images(digits, cfg)
    teacher = digits_pool.nets[0]
    for p in teacher.parameters():
        p.requires_grad_(False)
    z = teacher(images).detach()
    ckpts = train_proxy(images, z, digits_pool.metas[0], cfg, 0, torch.device("cpu"))
    return cfg, images, labels, teacher, ckpts


@pytest.mark.parametrize("segment", [1, 7, 15])
def test_segmented_gradient_equals_one_shot(proxy_setup, segment):
    cfg, images, labels, teacher, ckpts = proxy_setup
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))[:30]
    one_shot, stats = image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=30)
    segmented, stats_seg = image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=segment)
    assert one_shot.abs().sum() > 0
    torch.testing.assert_close(segmented, one_shot, rtol=1e-4, atol=1e-7)
    assert stats_seg["discrepancy"] == pytest.approx(stats["discrepancy"], rel=1e-5)
    outside = torch.ones(len(labels), dtype=torch.bool)
    outside[idx] = False
    assert segmented[outside].abs().sum() == 0


def test_gradient_matches_the_written_loss(proxy_setup):
    """The accumulated gradient is the gradient of -sum_k MAE(f_k, f_T) + alpha CE(f_T, y), computed directly."""
    cfg, images, labels, teacher, ckpts = proxy_setup
    idx = torch.arange(len(labels))
    grad, _ = image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=4)
    x = images.clone().requires_grad_(True)
    t = teacher(x)
    loss = -sum((c(x) - t).abs().mean() for c in ckpts) + cfg.alpha_ce * torch.nn.functional.cross_entropy(t, labels)
    loss.backward()
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-7)


def test_checkpoint_epochs_and_compat():
    assert APMConfig(student_epochs=250, num_checkpoints=5).checkpoint_epochs() == [50, 100, 150, 200, 250]
    assert APMConfig(student_epochs=250, num_checkpoints=5, reference_compat=True).checkpoint_epochs() == [
        51,
        101,
        151,
        201,
        251,
    ]
    with pytest.raises(ValueError):
        APMConfig(student_epochs=3, num_checkpoints=5)


def test_proxy_keeps_k_distinct_frozen_checkpoints(proxy_setup):
    cfg, *_, ckpts = proxy_setup
    assert len(ckpts) == cfg.num_checkpoints
    assert all(not p.requires_grad for c in ckpts for p in c.parameters())
    w = [next(c.parameters()) for c in ckpts]
    assert not torch.equal(w[0], w[1])


def test_refresh_schedule(digits, digits_pool, monkeypatch):
    import distillkit.image.apm as apm

    refreshed = []
    real = apm.train_proxy

    def spy(x, z, meta, cfg, step, device):
        refreshed.append(step)
        return real(x, z, meta, cfg, step, device)

    monkeypatch.setattr(apm, "train_proxy", spy)
    distill(digits, digits_pool, APMConfig(**{**TINY_APM, "iterations": 10}))
    assert refreshed == [0, 3, 6, 9]


def test_image_step_increases_discrepancy(proxy_setup):
    """Against a fixed teacher/student pair, the image update makes the loss go down (discrepancy up)."""
    cfg, images, labels, teacher, ckpts = proxy_setup
    idx = torch.arange(len(labels))
    x = images.clone()
    first = None
    for _ in range(5):
        grad, stats = image_gradient(x, labels, idx, teacher, ckpts, cfg)
        loss = -stats["discrepancy"] + cfg.alpha_ce * stats["ce"]
        first = loss if first is None else first
        x = x - 2.0 * grad
    _, stats = image_gradient(x, labels, idx, teacher, ckpts, cfg)
    assert -stats["discrepancy"] + cfg.alpha_ce * stats["ce"] < first


def test_same_seed_same_images_and_plain_file(digits, digits_pool, tmp_path):
    a = distill(digits, digits_pool, APMConfig(**TINY_APM))
    b = distill(digits, digits_pool, APMConfig(**TINY_APM))
    c = distill(digits, digits_pool, APMConfig(**{**TINY_APM, "seed": 1}))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    init, _ = init_images(digits, APMConfig(**TINY_APM))
    assert not torch.allclose(a.images, init)  # the images did move
    a.save(tmp_path / "set.safetensors")
    plain = safetensors.torch.load_file(tmp_path / "set.safetensors")
    assert set(plain) == {"images", "labels", "soft_labels"}
    assert plain["images"].shape == (30, 1, 8, 8) and torch.bincount(plain["labels"]).tolist() == [3] * 10
    assert DistilledSet.load(tmp_path / "set.safetensors").meta["label_teacher"].startswith("teacher_0")


RESUME_SCRIPT = """
import sys, json, torch
torch.set_num_threads(1)
from distillkit.data.images import load_images
from distillkit.image.apm import APMConfig, distill
from distillkit.image.teacher import TeacherPool
cfg = APMConfig(**json.loads(sys.argv[3]))
ds = distill(load_images("digits", seed=0, val_size=200), TeacherPool(sys.argv[1]), cfg, sys.argv[2])
ds.save(sys.argv[2] + "/final.safetensors")
"""


def test_killed_run_resumes_to_the_same_images(digits, digits_pool, tmp_path):
    cfg = {**TINY_APM, "iterations": 60, "checkpoint_every": 6, "student_epochs": 10}
    pool_dir = str(digits_pool.manifest.parent)
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0"}
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), pool_dir, str(run_dir), json.dumps(cfg)], env=env)
    state = run_dir / "apm_state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not state.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not (run_dir / "final.safetensors").exists(), "the run was not killed mid-way"
    done_at_kill = torch.load(state, weights_only=False)["t"]
    assert 0 < done_at_kill < cfg["iterations"]
    subprocess.run([sys.executable, str(script), pool_dir, str(run_dir), json.dumps(cfg)], env=env, check=True)
    resumed = safetensors.torch.load_file(run_dir / "final.safetensors")["images"]
    straight_dir = tmp_path / "straight"
    subprocess.run([sys.executable, str(script), pool_dir, str(straight_dir), json.dumps(cfg)], env=env, check=True)
    straight = safetensors.torch.load_file(straight_dir / "final.safetensors")["images"]
    assert torch.equal(resumed, straight)
