"""The run directory: config guard, compute-once results, atomic writes and stamped metrics."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from distillkit.errors import UserError
from distillkit.runs import Run, atomic_path, file_digest, save_numpy, save_safetensors, save_torch, write_json


def test_resume_with_other_settings_is_refused_but_what_to_compute_may_grow(tmp_path):
    Run(tmp_path / "r", {"seed": 0, "ipcs": [1]}, extendable=("ipcs",))
    Run(tmp_path / "r", {"seed": 0, "ipcs": [1, 10]}, extendable=("ipcs",))
    assert json.loads((tmp_path / "r" / "config.json").read_text())["ipcs"] == [1, 10]
    with pytest.raises(UserError, match="differs in: seed"):
        Run(tmp_path / "r", {"seed": 1, "ipcs": [1, 10]}, extendable=("ipcs",))


def test_cached_computes_once_across_processes(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 91.5}

    first = Run(tmp_path, {"a": 1}).cached("evals/apm.json", compute, timed=True)
    again = Run(tmp_path, {"a": 1}).cached("evals/apm.json", compute, timed=True)
    assert len(calls) == 1
    assert first == again and again["accuracy"] == 91.5 and again["seconds"] >= 0


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_savers_round_trip(tmp_path):
    import safetensors.torch

    x = torch.arange(6.0).reshape(2, 3)
    save_torch(tmp_path / "s.pt", {"x": x})
    save_safetensors(tmp_path / "s.safetensors", {"x": x}, {"k": "v"})
    save_numpy(tmp_path / "e.npy", x.numpy())
    assert torch.equal(torch.load(tmp_path / "s.pt")["x"], x)
    assert torch.equal(safetensors.torch.load_file(tmp_path / "s.safetensors")["x"], x)
    assert np.array_equal(np.load(tmp_path / "e.npy"), x.numpy())
    data = (tmp_path / "e.npy").read_bytes()
    assert file_digest(tmp_path / "e.npy") == hashlib.sha256(data).hexdigest()
    assert file_digest(tmp_path / "e.npy", 16) == hashlib.sha256(data).hexdigest()[:16]


def test_metrics_carry_versions_device_and_wall_time(tmp_path):
    run = Run(tmp_path, {"a": 1}, device="cpu")
    run.write_metrics({"accuracy": 90.0})
    m = json.loads((tmp_path / "metrics.json").read_text())
    prov = m["provenance"]
    assert m["accuracy"] == 90.0
    assert prov["torch"] == torch.__version__ and prov["distillkit"] and prov["transformers"]
    assert prov["device"] == "cpu" and prov["wall_seconds"] >= 0
    assert prov["git_commit"] is None or len(prov["git_commit"].split("+")[0]) == 40


def test_a_second_process_writing_the_same_run_is_refused_until_the_first_finishes(tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys; from distillkit.runs import Run; from distillkit.errors import UserError\n"
        "try:\n    Run(sys.argv[1], {'a': 1})\nexcept UserError as e:\n    print(e); sys.exit(3)\n"
    )
    run = Run(tmp_path, {"a": 1})
    busy = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert busy.returncode == 3 and "another running distillkit process" in busy.stdout
    run.write_metrics({"done": True})
    free = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert free.returncode == 0, free.stdout + free.stderr


def test_runs_of_one_process_share_the_lock(tmp_path):
    first = Run(tmp_path, {"a": 1})
    second = Run(tmp_path, {"a": 1})
    second.write_metrics({"n": 2})
    first.write_metrics({"n": 1})
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 1
