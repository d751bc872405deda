"""APM's parallel variant: disjoint groups, their own seeds, torchrun against one process, and the merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from distillkit.errors import UserError
from distillkit.image.apm import APMConfig, distill
from distillkit.image.distilled import DistilledSet
from distillkit.image.groups import Group
from distillkit.image.initial import init_images
from distillkit.image.parallel import distill_groups, merge_files, merge_sets
from distillkit.seeding import derive_seed, generator

TINY = {
    "ipc": 3,
    "iterations": 6,
    "student_epochs": 4,
    "num_checkpoints": 2,
    "refresh_every": 3,
    "lr_img": 5.0,
    "lr_net": 0.05,
}
CLI_TINY = ["--set", "apm.iterations=6", "--set", "apm.student_epochs=4", "--set", "apm.num_checkpoints=2"]


def cli(*args: str, torchrun: int = 0, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun)]
        if torchrun
        else [sys.executable]
    )
    proc = subprocess.run(
        [*launcher, "-m", "distillkit.cli.distill", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_group_layouts():
    assert [Group(g, 3).ipc_range(10) for g in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [Group(g, 2).ipc_range(3) for g in range(2)] == [(0, 2), (2, 3)]
    assert Group(1, 3, "classes").classes(10) == [1, 4, 7] and Group(1, 3, "classes").ipc_range(5) == (0, 5)
    assert Group(1, 2, "classes").seed(7) == derive_seed(7, "group", 1) != Group(0, 2).seed(7)
    for bad in [(0, 0), (2, 2), (-1, 2)]:
        with pytest.raises(UserError):
            Group(*bad)
    with pytest.raises(UserError, match="unknown group split"):
        Group(0, 2, "pixels")


def test_ungrouped_init_is_unchanged(digits):
    """group=None draws exactly what the code drew before groups existed (one generator, interleaved noise)."""
    for init in ("real", "noise"):
        cfg = APMConfig(**TINY, init=init, seed=4)
        g = generator(cfg.seed, "init")
        xs = []
        for c in range(digits.num_classes):
            idx = digits.class_indices(c)
            pick = idx[torch.randperm(len(idx), generator=g)[: cfg.ipc]]
            xs.append(digits.x_train[pick] if init == "real" else torch.randn((cfg.ipc, *digits.shape), generator=g))
        assert torch.equal(init_images(digits, cfg)[0], torch.cat(xs))


@pytest.mark.parametrize("count", [2, 3, 5])
def test_ipc_split_initial_images_are_disjoint_slices(digits, count):
    cfg = APMConfig(**{**TINY, "ipc": 5})
    full, full_labels = init_images(digits, cfg)
    parts = [init_images(digits, cfg, Group(g, count)) for g in range(count)]
    flat = [x.flatten(1) for x, _ in parts]
    for i in range(count):
        for j in range(i + 1, count):
            assert not (flat[i][:, None] == flat[j][None]).all(-1).any(), f"groups {i} and {j} share an image"
    for c in range(digits.num_classes):  # together: the ungrouped initial images of the class, in order
        joined = torch.cat([x[y == c] for x, y in parts])
        assert torch.equal(joined, full[full_labels == c])
    sizes = [len(y) // digits.num_classes for _, y in parts]
    assert sum(sizes) == 5 and max(sizes) - min(sizes) <= 1


def test_classes_split_covers_each_class_once(digits, digits_pool, tmp_path):
    cfg = APMConfig(**TINY)
    merged = distill_groups(digits, digits_pool, cfg, tmp_path, 3, "classes")
    assert torch.bincount(merged.labels).tolist() == [3] * 10
    assert torch.equal(merged.labels, merged.labels.sort().values)
    owners = [c for g in merged.meta["groups"] for c in g["classes"]]
    assert sorted(owners) == list(range(10))
    info = json.loads((tmp_path / "groups.json").read_text())
    assert info["split"] == "classes" and [g["n_images"] for g in info["groups"]] == [12, 9, 9]
    assert (tmp_path / "grid.png").exists()
    group1 = DistilledSet.load(tmp_path / "group_1" / "distilled.safetensors")
    assert sorted(set(group1.labels.tolist())) == [1, 4, 7]
    assert group1.meta["group"]["seed"] == Group(1, 3, "classes").seed(cfg.seed)


def test_groups_use_their_own_seeds_and_resume(digits, digits_pool, tmp_path):
    cfg = APMConfig(**TINY)
    a = distill(digits, digits_pool, cfg, group=Group(0, 2, "classes"))
    b = distill(digits, digits_pool, cfg, group=Group(0, 2, "classes"))
    assert torch.equal(a.images, b.images)
    assert a.meta["group"]["seed"] == Group(0, 2, "classes").seed(0) and a.meta["apm_config"] == cfg.model_dump()
    c = distill(digits, digits_pool, APMConfig(**TINY, seed=1), group=Group(0, 2, "classes"))
    assert not torch.equal(a.images, c.images)
    distill(digits, digits_pool, cfg, tmp_path, group=Group(0, 2))
    with pytest.raises(UserError, match="written for group"):
        distill(digits, digits_pool, cfg, tmp_path, group=Group(1, 2))
    with pytest.raises(UserError, match="written for group"):
        distill(digits, digits_pool, cfg, tmp_path)


def test_torchrun_two_processes_equal_one_process(digits_pool, tmp_path):
    pool = str(digits_pool.manifest.parent)
    common = ["image", "distill", "--teachers", pool, "--dataset", "digits", "--ipc", "3", *CLI_TINY, "--groups", "2"]
    cli(*common, "--out", str(tmp_path / "one"))
    proc = cli(*common, "--out", str(tmp_path / "two"), torchrun=2)
    assert "merged 2 groups" in proc.stdout
    one = safetensors.torch.load_file(tmp_path / "one" / "distilled.safetensors")
    two = safetensors.torch.load_file(tmp_path / "two" / "distilled.safetensors")
    assert two["images"].shape == (30, 1, 8, 8) and two["soft_labels"].shape == (30, 10)
    assert torch.bincount(two["labels"]).tolist() == [3] * 10
    assert torch.equal(two["labels"], two["labels"].sort().values)
    for key in ("images", "labels", "soft_labels"):
        assert torch.equal(one[key], two[key]), key
    info = json.loads((tmp_path / "two" / "groups.json").read_text())
    assert info["world_size"] == 2 and [g["rank"] for g in info["groups"]] == [0, 1]
    assert [g["n_images"] for g in info["groups"]] == [20, 10]
    for g in (0, 1):
        assert (tmp_path / "two" / f"group_{g}" / "apm_state.pt").exists()
    # a rerun in one process resumes: every group is already done, the merge is the same
    cli(*common, "--out", str(tmp_path / "two"))
    again = safetensors.torch.load_file(tmp_path / "two" / "distilled.safetensors")
    assert torch.equal(again["images"], two["images"])
    # the merge command gives the same set from the group files
    out = tmp_path / "merged.safetensors"
    cli(
        "image",
        "merge",
        *(str(tmp_path / "two" / f"group_{g}" / "distilled.safetensors") for g in (1, 0)),
        "--out",
        str(out),
    )
    assert torch.equal(safetensors.torch.load_file(out)["images"], two["images"])
    assert (tmp_path / "merged_grid.png").exists()


def _fake(index: int, count: int = 2, split: str = "ipc", **meta) -> DistilledSet:
    labels = torch.arange(4) % 2
    base = {
        "dataset": "digits",
        "classes": ["0", "1"],
        "mean": [0.5],
        "std": [0.25],
        "label_teacher": "t@1",
        "label_mode": "teacher_logits",
        "apm_config": {"seed": 0},
        "distill_seconds": 1.0,
        "group": {"index": index, "count": count, "split": split, "seed": index},
    }
    return DistilledSet(torch.full((4, 1, 4, 4), float(index)), labels, torch.randn(4, 2), {**base, **meta})


def test_merge_sorts_by_class_and_records_groups():
    merged = merge_sets([_fake(1), _fake(0)])
    assert merged.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert merged.images[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]  # group order within a class
    assert [g["index"] for g in merged.meta["groups"]] == [0, 1] and merged.meta["ipc"] == 4
    assert merged.soft_labels.shape == (8, 2) and merged.meta["distill_seconds"] == 2.0


@pytest.mark.parametrize(
    "other, needle",
    [
        (_fake(0), "group 0 appears twice"),
        (_fake(1, count=3), "merge groups of one run only"),
        (_fake(1, split="classes"), "merge groups of one run only"),
        (_fake(1, dataset="mnist"), "in dataset"),
        (_fake(1, classes=["a", "b"]), "in classes"),
        (_fake(1, mean=[0.1]), "in normalisation"),
        (_fake(1, apm_config={"seed": 1}), "differs in: seed"),
        (_fake(1, group=None), "not the output of one APM group"),
    ],
)
def test_merge_refuses_mismatched_sets(other, needle):
    with pytest.raises(UserError, match=needle):
        merge_sets([_fake(0), other])


def test_merge_refuses_other_image_shape():
    odd = _fake(1)
    odd.images = torch.zeros(4, 1, 6, 6)
    with pytest.raises(UserError, match="images of shape"):
        merge_sets([_fake(0), odd])


def test_merge_cli_errors(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    _fake(0).save(a)
    _fake(0).save(b)
    one_line_error(
        cli("image", "merge", str(a), str(b), "--out", str(tmp_path / "m.safetensors"), check=False),
        "group 0 appears twice",
    )
    _fake(1, count=3).save(b)
    one_line_error(cli("image", "merge", str(a), str(b), check=False), "is group 1 of 3")
    merged, grid = merge_files([a], tmp_path / "single.safetensors")
    assert len(merged.labels) == 4 and grid.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ipc", "2", "--groups", "3"], "3 groups is more than the IPC (2)"),
        (["--ipc", "2", "--groups", "11", "--group-split", "classes"], "11 groups is more than the 10 classes"),
        (["--ipc", "2", "--groups", "0"], "--groups': should be greater than or equal to 1"),
        (["--ipc", "2", "--groups", "2", "--group-split", "pixels"], "unknown group split"),
    ],
)
def test_bad_group_counts_give_one_line(digits_pool, tmp_path, args, needle):
    out = tmp_path / "run"
    proc = cli(
        "image",
        "distill",
        "--teachers",
        str(digits_pool.manifest.parent),
        "--dataset",
        "digits",
        *args,
        "--out",
        str(out),
        check=False,
    )
    one_line_error(proc, needle)
    assert not (Path(out) / "config.json").exists()
