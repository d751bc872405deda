"""The library on a CUDA device: every system run there gives what it gives on the CPU.

Skipped without CUDA. `DISTILLKIT_TEST_DEVICE=cpu` (or any device) runs the same bodies on that device
instead, which proves they work where no GPU is at hand; the comparisons against the CPU then hold exactly.
Float32 comparisons run with TF32 off (IEEE float32 matmuls and convolutions), so tolerances stay tight.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_apm import TINY_APM
from test_dilm_head_grad import TEXTS
from test_parallel import cli
from test_ranks import compare_args, results

from distillkit.devices import bf16_supported, resolve_device, tf32
from distillkit.image.apm import APMConfig, distill, image_gradient, train_proxy
from distillkit.image.initial import init_images

FORCED = os.environ.get("DISTILLKIT_TEST_DEVICE")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not FORCED and not torch.cuda.is_available(),
        reason="needs CUDA (DISTILLKIT_TEST_DEVICE=cpu runs these bodies on the CPU)",
    ),
]
CPU = torch.device("cpu")
APM_TINY = TINY_APM  # the CPU tests' schedules and texts, run on the device


@pytest.fixture(scope="module")
def device() -> torch.device:
    return resolve_device(FORCED or "cuda")


@pytest.fixture(scope="module", autouse=True)
def ieee_float32():
    with tf32(False):
        yield


def on(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return copy.deepcopy(net).to(device)


# ---- APM ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def apm_case(digits, digits_pool):
    """The synthetic set, a frozen teacher and the proxy checkpoints trained on the CPU (shared by both devices)."""
    cfg = APMConfig(**APM_TINY)
    images, labels = init_images(digits, cfg)
    teacher = on(digits_pool.nets[0], CPU)
    for p in teacher.parameters():
        p.requires_grad_(False)
    z = teacher(images).detach()
    ckpts = train_proxy(images, z, digits_pool.metas[0], cfg, 0, CPU)
    return cfg, images, labels, teacher, ckpts


@pytest.mark.parametrize("segment", [1, 7])
def test_apm_segment_gradient_on_device_equals_one_shot_and_cpu(apm_case, device, segment):
    cfg, images, labels, teacher, ckpts = apm_case
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))[:30]
    cpu_grad, cpu_stats = image_gradient(images, labels, idx, teacher, ckpts, cfg, segment_size=30)
    t_dev, c_dev = on(teacher, device), [on(c, device) for c in ckpts]
    x_dev, y_dev = images.to(device), labels.to(device)
    one_shot, _ = image_gradient(x_dev, y_dev, idx, t_dev, c_dev, cfg, segment_size=30)
    segmented, stats = image_gradient(x_dev, y_dev, idx, t_dev, c_dev, cfg, segment_size=segment)
    assert segmented.device.type == device.type and cpu_grad.abs().sum() > 0
    torch.testing.assert_close(segmented, one_shot, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(segmented.cpu(), cpu_grad, rtol=1e-3, atol=1e-6)
    assert stats["discrepancy"] == pytest.approx(cpu_stats["discrepancy"], rel=1e-4)


def test_apm_proxy_training_on_device_tracks_the_cpu(apm_case, digits_pool, device):
    """The proxy students trained on the device agree with their CPU twins on the images they were fit to."""
    cfg, images, _, teacher, cpu_ckpts = apm_case
    z = teacher(images).detach()
    dev_ckpts = train_proxy(images.to(device), z.to(device), digits_pool.metas[0], cfg, 0, device)
    assert next(dev_ckpts[-1].parameters()).device.type == device.type
    with torch.no_grad():
        a, b = cpu_ckpts[-1](images), dev_ckpts[-1](images.to(device)).cpu()
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.95
    torch.testing.assert_close(b, a, rtol=0.05, atol=0.05)


RESUME_SCRIPT = """
import sys, json, torch
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True, warn_only=True)  # CUDA: the same sums in both processes
from distillkit.data.images import load_images
from distillkit.image.apm import APMConfig, distill
from distillkit.image.teacher import TeacherPool
cfg = APMConfig(**json.loads(sys.argv[3]))
ds = distill(load_images("digits", seed=0, val_size=200), TeacherPool(sys.argv[1]), cfg, sys.argv[2], sys.argv[4])
ds.save(sys.argv[2] + "/final.safetensors")
"""


def test_apm_killed_on_device_resumes_to_the_same_images(digits_pool, device, tmp_path):
    cfg = {**APM_TINY, "iterations": 120, "checkpoint_every": 6, "student_epochs": 10}
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    pool = str(digits_pool.manifest.parent)

    def run(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), pool, str(out), json.dumps(cfg), str(device)], env=env)

    killed = tmp_path / "killed"
    proc = run(killed)
    state = killed / "apm_state.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not state.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not (killed / "final.safetensors").exists(), "the run was not killed mid-way"
    assert 0 < torch.load(state, weights_only=False)["t"] < cfg["iterations"]
    assert run(killed).wait() == 0
    straight = tmp_path / "straight"
    assert run(straight).wait() == 0
    resumed = safetensors.torch.load_file(killed / "final.safetensors")["images"]
    plain = safetensors.torch.load_file(straight / "final.safetensors")["images"]
    # CUDA kernels may sum in another order from one process to the next: equal to float32 noise
    torch.testing.assert_close(resumed, plain, rtol=1e-3, atol=1e-3)


def test_apm_distill_on_device_is_close_to_cpu(digits, digits_pool, device):
    cfg = APMConfig(**{**APM_TINY, "iterations": 3})
    cpu = distill(digits, digits_pool, cfg)
    dev = distill(digits, digits_pool, cfg, device=device)
    init, _ = init_images(digits, cfg)
    moved_cpu, moved_dev = cpu.images - init, dev.images.cpu() - init
    assert moved_cpu.abs().sum() > 0
    cos = torch.nn.functional.cosine_similarity(moved_cpu.flatten(), moved_dev.flatten(), dim=0)
    assert cos > 0.9


# ---- MTT and DM --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def experts_dir(digits, tmp_path_factory):
    from distillkit.image.experts import ExpertConfig, train_experts

    out = tmp_path_factory.mktemp("experts")
    train_experts(digits, ExpertConfig(num_experts=1, epochs=3, lr=0.05, net_options={"width": 8, "depth": 2}), out)
    return out


@pytest.mark.parametrize("gradient", ["unrolled", "constant_memory"])
def test_one_mtt_step_on_device_equals_cpu(digits, experts_dir, device, gradient):
    from distillkit.image.experts import Experts
    from distillkit.image.mtt import MTTConfig, distill_mtt

    cfg = MTTConfig(
        ipc=2, iterations=1, syn_steps=3, expert_epochs=2, max_start_epoch=1, batch_syn=8, gradient=gradient
    )
    cpu = distill_mtt(digits, Experts(experts_dir), cfg)
    dev = distill_mtt(digits, Experts(experts_dir, device), cfg, device=device)
    init, _ = init_images(digits, APMConfig(ipc=2))
    assert (cpu.images - init).abs().sum() > 0
    torch.testing.assert_close(dev.images, cpu.images, rtol=1e-3, atol=1e-3)  # image lr x float32 noise
    assert dev.meta["syn_lr"] == pytest.approx(cpu.meta["syn_lr"], rel=1e-4)


def test_one_dm_step_on_device_equals_cpu(digits, device):
    from distillkit.image.dm import DMConfig, distill_dm

    cfg = DMConfig(ipc=2, iterations=1, batch_real=16, net_options={"width": 16, "depth": 2})
    cpu = distill_dm(digits, cfg)
    dev = distill_dm(digits, cfg, device=device)
    init, _ = init_images(digits, cfg)
    assert (cpu.images - init).abs().sum() > 0
    torch.testing.assert_close(dev.images, cpu.images, rtol=1e-4, atol=1e-4)


def test_evaluator_on_device_matches_cpu_accuracy(digits, device):
    from distillkit.image.evaluate import EvalConfig, evaluate_set, random_subset

    x, y = random_subset(digits, 5, seed=0)
    cfg = EvalConfig(runs=1, epochs=100, lr=0.05, label_mode="hard", loss="ce", net_options={"width": 16, "depth": 2})
    cpu = evaluate_set(x, y, None, digits, cfg)
    dev = evaluate_set(x, y, None, digits, cfg, device)
    assert cpu["mean"] > 50  # 10 classes: chance is 10 %
    assert abs(dev["mean"] - cpu["mean"]) <= 5.0
    assert dev["train_fit"] >= cpu["train_fit"] - 10


def test_batched_evaluation_runs_follow_their_sequential_twins_on_device(digits, device):
    from test_batched_eval import NET, rel_diff, twins

    from distillkit.image.evaluate import EvalConfig

    cfg = EvalConfig(net_options=NET, runs=3, epochs=12, lr=0.05, batch_size=8, label_mode="hard", loss="ce")
    for dtype, epochs, tolerance in ((torch.float64, 12, 1e-9), (torch.float32, 2, 1e-5)):
        t = twins(digits, cfg.model_copy(update={"epochs": epochs}), dtype, str(device))
        assert t[True][1] is True
        for init, s, b in zip(t["init"], t[False][0], t[True][0], strict=True):
            assert next(b.parameters()).device.type == device.type
            assert rel_diff(init, s) > 1e-3 and rel_diff(s, b) < tolerance, (dtype, rel_diff(s, b))


# ---- DiLM --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_train():
    from distillkit.data.text import TextDataset

    return TextDataset(TEXTS * 2, [1, 0, 0, 0, 1] * 2, ["other", "great"], ["text"])


@pytest.mark.parametrize("lora", [False, True])
def test_dilm_stage1_step_on_device_equals_cpu(text_train, device, lora):
    from distillkit.text.generator import Generator, LoraSettings
    from distillkit.text.stage1 import Stage1Config, train_stage1

    cfg = Stage1Config(steps=2, batch_size=4, lr=1e-3)
    name, adapters = ("tiny-llama", LoraSettings(r=4)) if lora else ("tiny-gpt2", None)
    losses = {}
    for where in (CPU, device):
        gen = Generator.create(name, 2, 1, max_length=24, seed=1, device=where, lora=adapters)
        losses[where.type] = train_stage1(gen, text_train, cfg, seed=3, progress=False)
        params = torch.cat([p.detach().flatten().cpu() for p in gen.model.parameters()])
        losses[where.type + "_params"] = params
    assert losses[device.type] == pytest.approx(losses["cpu"], rel=1e-4)
    torch.testing.assert_close(losses[device.type + "_params"], losses["cpu_params"], rtol=1e-3, atol=1e-5)


def test_dilm_stage1_bf16_tracks_fp32(text_train, device):
    from distillkit.text.generator import Generator

    if not bf16_supported(device):
        pytest.skip(f"{device} has no bfloat16")
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=24, seed=1, device=device)
    gen.model.eval()
    exact = gen.per_sample_loss(TEXTS, [0, 1, 0, 1, 0])
    gen.precision = "bf16"
    fast = gen.per_sample_loss(TEXTS, [0, 1, 0, 1, 0])
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, exact, rtol=2e-2, atol=2e-2)


def test_dilm_stage2_step_closed_form_equals_autograd_on_device(device):
    from distillkit.text.generator import Generator
    from distillkit.text.gm import matching_loss
    from distillkit.text.learner import Learner

    learner = Learner.load("tiny-bert", 2, max_length=24, seed=3, device=device)
    learner.reset(7)
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=24, seed=1, device=device)
    gen.model.eval()
    real, syn = TEXTS[:3], TEXTS[2:]
    grads = {}
    for mode in ("closed_form", "autograd"):
        gen.model.zero_grad(set_to_none=True)
        loss, info = matching_loss(gen, learner, 1, real, syn, num_classes=2, head_grad=mode)
        loss.backward()
        grads[mode] = (loss.item(), torch.cat([p.grad.flatten() for p in gen.model.parameters() if p.grad is not None]))
        assert info["g_real"].device.type == device.type
    assert grads["closed_form"][0] == pytest.approx(grads["autograd"][0], rel=1e-4, abs=1e-6)
    assert grads["closed_form"][1].abs().sum() > 0
    torch.testing.assert_close(grads["closed_form"][1], grads["autograd"][1], rtol=1e-3, atol=1e-7)
    labels = torch.tensor([0, 1, 1, 0, 1], device=device)
    closed = learner.per_sample_head_grads(learner.features(TEXTS), labels)
    for i in range(len(TEXTS)):
        torch.testing.assert_close(
            closed[i], learner.autograd_head_grad([TEXTS[i]], labels[i : i + 1]), rtol=1e-4, atol=1e-6
        )


def test_dilm_stage2_loop_runs_on_device(text_train, device):
    """One outer loop of GradientMatcher (diverse batches, learner steps) with every tensor on the device."""
    from distillkit.text.api import tiny_gm_config
    from distillkit.text.generator import Generator
    from distillkit.text.gm import GradientMatcher
    from distillkit.text.learner import Learner

    learner = Learner.load("tiny-bert", 2, max_length=24, seed=3, device=device)
    gen = Generator.create("tiny-gpt2", 2, 1, max_length=24, seed=1, device=device)
    emb = learner.features(text_train.texts).cpu().numpy()
    cfg = tiny_gm_config(outer_loops=1, syn_batch=2, real_batch=2, rt_sets=1, learner_batch=4, generator_dropout=False)
    history = GradientMatcher(gen, learner, text_train, emb, cfg, seed=5).run(progress=False)
    assert len(history) == 2 and all(0 <= h["loss"] <= 2 for h in history)


# ---- DialogBench base scoring ------------------------------------------------------------------------------
def test_dialogbench_base_scores_on_device_equal_cpu(device, tmp_path):
    from distillkit.dialogbench.evaluate import EvalSettings, evaluate
    from distillkit.lm import load_local_lm

    settings = EvalSettings(model="smollm2", mode="base", limit=6, batch_size=4)
    items = {}
    for where in (CPU, device):
        lm = load_local_lm("smollm2", device=where, dtype="float32", batch_size=4)
        out = tmp_path / where.type
        metrics = evaluate(settings, out, progress=False, lm=lm)
        assert metrics["complete"] and metrics["backend"]["device"].startswith(where.type)
        items[where.type] = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    cpu, dev = items["cpu"], items[device.type]
    assert len(cpu) == len(dev) > 0
    for a, b in zip(cpu, dev, strict=True):
        for letter, score in a["scores"].items():
            assert b["scores"][letter]["logprob"] == pytest.approx(score["logprob"], abs=2e-2, rel=1e-3)
    same = sum(a["pred"]["token"] == b["pred"]["token"] for a, b in zip(cpu, dev, strict=True))
    assert same >= len(cpu) - 1  # a near tie may flip on float32 noise


def test_local_lm_bf16_scores_track_fp32(device):
    from distillkit.lm import load_local_lm
    from distillkit.lm.offline import tiny_llama_folder

    if not bf16_supported(device):
        pytest.skip(f"{device} has no bfloat16")
    reqs = [("The capital of France is", " Paris"), ("The capital of France is", " a small dog")]
    exact = load_local_lm(str(tiny_llama_folder()), device=device, dtype="float32").loglikelihood(reqs)
    fast = load_local_lm(str(tiny_llama_folder()), device=device, dtype="float32", precision="bf16")
    assert fast.describe()["precision"] == "bf16"
    assert fast.loglikelihood(reqs) == pytest.approx(exact, rel=5e-2, abs=0.5)


# ---- parallel groups under torchrun ------------------------------------------------------------------------
def test_groups_move_a_cpu_loaded_pool_to_the_device(digits, digits_pool, device, tmp_path):
    from test_parallel import TINY

    from distillkit.image.parallel import distill_groups
    from distillkit.image.teacher import TeacherPool

    pool = TeacherPool(digits_pool.manifest.parent)  # on the CPU, as `distill image distill --groups` loads it
    merged = distill_groups(digits, pool, APMConfig(**TINY), tmp_path, 2, "classes", str(device))
    assert all(next(net.parameters()).device.type == device.type for net in pool.nets)
    assert torch.bincount(merged.labels).tolist() == [TINY["ipc"]] * digits.num_classes


def test_torchrun_groups_on_device_equal_one_process(digits_pool, device, tmp_path):
    """Two torchrun processes (nccl on CUDA, one GPU each; gloo on the CPU) give the one-process merge."""
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("nccl with two processes needs two GPUs")
    flag = "cuda" if device.type == "cuda" else str(device)
    pool = str(digits_pool.manifest.parent)
    tiny = ["--set", "apm.iterations=6", "--set", "apm.student_epochs=4", "--set", "apm.num_checkpoints=2"]
    common = ["image", "distill", "--teachers", pool, "--dataset", "digits", "--ipc", "3", *tiny, "--groups", "2"]
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}

    def cli(out: Path, nproc: int) -> None:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        cmd = [*(launcher if nproc else [sys.executable]), "-m", "distillkit.cli.distill", *common]
        proc = subprocess.run([*cmd, "--device", flag, "--out", str(out)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]

    cli(tmp_path / "one", 0)
    cli(tmp_path / "two", 2)
    one = safetensors.torch.load_file(tmp_path / "one" / "distilled.safetensors")
    two = safetensors.torch.load_file(tmp_path / "two" / "distilled.safetensors")
    assert torch.equal(one["labels"], two["labels"]) and torch.bincount(two["labels"]).tolist() == [3] * 10
    for key in ("images", "soft_labels"):
        torch.testing.assert_close(two[key], one[key], rtol=1e-3, atol=1e-3)
    info = json.loads((tmp_path / "two" / "groups.json").read_text())
    assert info["world_size"] == 2 and [g["rank"] for g in info["groups"]] == [0, 1]


def test_torchrun_compare_on_device_equals_one_process(device, tmp_path):
    """A comparison (pools, sets, evaluations) on two torchrun processes, nccl with one GPU each, against one
    process: the same tables (bit for bit under gloo on the CPU; within a test image or two on CUDA, where
    cuDNN's kernels may sum in another order)."""
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("nccl with two processes needs two GPUs (one per process); this machine has fewer")
    args = compare_args("cuda" if device.type == "cuda" else str(device))
    cli("image", *args, "--out", str(tmp_path / "one"))
    cli("image", *args, "--out", str(tmp_path / "two"), torchrun=2)
    one, two = results(tmp_path / "one"), results(tmp_path / "two")
    assert (one["processes"], two["processes"]) == (1, 2) and sorted(one["evals"]) == sorted(two["evals"])
    if device.type == "cpu":
        assert {k: v for k, v in one.items() if k != "processes"} == {k: v for k, v in two.items() if k != "processes"}
    for a, b in zip(one["metrics"]["rows"], two["metrics"]["rows"], strict=True):
        assert (a["method"], a["ipc"], a["arch"], a["labels"]) == (b["method"], b["ipc"], b["arch"], b["labels"])
        assert b["mean"] == pytest.approx(a["mean"], abs=1.0)
