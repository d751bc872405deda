"""Pools of trained networks (teachers, experts): resumable, one file per network, refused for other settings."""

from __future__ import annotations

import json

import pytest

from distillkit.data.images import load_images
from distillkit.errors import UserError
from distillkit.image.experts import ExpertConfig, Experts, train_experts
from distillkit.image.teacher import TeacherConfig, TeacherPool, train_pool

TINY_NET = {"width": 8, "depth": 2}


def test_a_deleted_network_is_retrained_to_the_same_bytes(digits, tmp_path):
    cfg = TeacherConfig(epochs=1, patience=None, net_options=TINY_NET, num_teachers=2)
    manifest = train_pool(digits, cfg, tmp_path)
    first = {i: (tmp_path / f"teacher_{i}.safetensors").read_bytes() for i in range(2)}
    assert first[0] != first[1]
    (tmp_path / "teacher_1.safetensors").unlink()
    train_pool(digits, cfg, tmp_path)
    assert (tmp_path / "teacher_1.safetensors").read_bytes() == first[1]
    entries = json.loads(manifest.read_text())["teachers"]
    assert [e["file"] for e in entries] == ["teacher_0.safetensors", "teacher_1.safetensors"]
    assert TeacherPool(tmp_path).ids == [f"{e['file']}@{e['sha256_16']}" for e in entries]


def test_pools_for_other_data_or_settings_are_refused(digits, tmp_path):
    teachers = TeacherConfig(epochs=1, patience=None, net_options=TINY_NET)
    train_pool(digits, teachers, tmp_path / "teachers")
    bigger = load_images("digits", seed=0, val_size=200, size=12)
    with pytest.raises(UserError, match="other settings \\(differs in: data\\)"):
        train_pool(bigger, teachers, tmp_path / "teachers")
    with pytest.raises(UserError, match="teacher pool was built for other data"):
        TeacherPool(tmp_path / "teachers").check_matches(bigger)
    experts = ExpertConfig(num_experts=1, epochs=1, net_options=TINY_NET)
    train_experts(digits, experts, tmp_path / "experts")
    with pytest.raises(UserError, match="other settings \\(differs in: data, training\\)"):
        train_experts(bigger, experts.model_copy(update={"lr": 0.1}), tmp_path / "experts")
    with pytest.raises(UserError, match="expert pool was built for other data"):
        Experts(tmp_path / "experts").check_matches(bigger)
    # a larger pool with the same settings is an extension, not other settings
    train_experts(digits, experts.model_copy(update={"num_experts": 2}), tmp_path / "experts")
    assert len(Experts(tmp_path / "experts")) == 2


def test_damaged_pool_folders_are_one_line_errors(digits, tmp_path):
    cfg = TeacherConfig(epochs=1, patience=None, net_options=TINY_NET)
    train_pool(digits, cfg, tmp_path)
    (tmp_path / "teacher_0.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="teacher_0.safetensors is missing or damaged"):
        train_pool(digits, cfg, tmp_path)
    (tmp_path / "pool.json").write_text(json.dumps({"teachers": "none"}))
    with pytest.raises(UserError, match="not a pool manifest"):
        train_pool(digits, cfg, tmp_path)
    with pytest.raises(UserError, match="not a pool manifest"):
        TeacherPool(tmp_path)
    (tmp_path / "pool.json").write_text(json.dumps({"teachers": []}))
    with pytest.raises(UserError, match="is empty"):
        TeacherPool(tmp_path)
    with pytest.raises(UserError, match="no teacher pool at"):
        TeacherPool(tmp_path / "nothing")


def test_a_network_sidecar_is_never_left_half_written(tmp_path, monkeypatch):
    from pathlib import Path

    from torch import nn

    from distillkit.image.checkpoints import save_net

    net = nn.Linear(2, 2)
    save_net(net, tmp_path / "net.safetensors", {"index": 0})
    real = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        save_net(net, tmp_path / "net.safetensors", {"index": 1, "note": "a longer second version"})
    monkeypatch.undo()
    assert json.loads((tmp_path / "net.json").read_text()) == {"index": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]  # no temporary file left
