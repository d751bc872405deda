"""Many processes through torchrun: every piece of work is done once, by one rank, seeded by what it is, so N
processes write what one process writes; a stopped run resumes with any number of processes; the run-directory
lock still refuses processes of another job."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from test_parallel import cli

from distillkit import distributed
from distillkit.cli.common import run_app
from distillkit.cli.image import app as image_app
from distillkit.cli.text import app as text_app
from distillkit.errors import UserError
from distillkit.image.checkpoints import read_safetensors
from distillkit.runs import Run

TINY = {
    "data.val_size": 200,
    "teacher.num_teachers": 2,
    "teacher.epochs": 2,
    "teacher.patience": "null",
    "experts.num_experts": 2,
    "experts.epochs": 2,
    "mtt.iterations": 2,
    "mtt.syn_steps": 2,
    "mtt.expert_epochs": 1,
    "mtt.max_start_epoch": 1,
    "eval.runs": 2,
    "eval.epochs": 8,
    "eval.random_draws": 2,
    "full.runs": 1,
    "full.epochs": 2,
    **{f"{s}.net_options.{k}": v for s in ("teacher", "experts", "eval") for k, v in (("width", 8), ("depth", 2))},
}


def compare_args(device: str = "cpu") -> list[str]:
    """`distill image compare` of three methods at two IPCs, with their pools, on `device`."""
    return [
        "compare",
        *("--dataset", "digits", "--methods", "mtt,herding,random", "--ipc", "1,2", "--cross-arch", "mlp"),
        *("--device", device),
        *(arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")),
    ]


COMPARE = compare_args()
TIMING = {"seconds", "peak_mb"}  # what differs between any two runs, even of one process


def one_process(app, *args: str) -> None:
    """The command in this process with one thread, as each torchrun process of the tests runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_app(app, list(args))
    finally:
        torch.set_num_threads(threads)


def results(out: Path) -> dict:
    """What a comparison wrote, timings and memory left out: metrics, both tables, every result file."""
    metrics = json.loads((out / "metrics.json").read_text())
    provenance = metrics.pop("provenance")
    for row in metrics["rows"]:
        row.pop("seconds"), row.pop("peak_mb")
    for cost in metrics["costs"].values():
        cost.pop("seconds"), cost.pop("peak_mb")
    metrics["full_data"].pop("seconds")
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    evals = {p.name: json.loads(p.read_text()) for p in (out / "evals").glob("*.json")}
    networks = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*_[0-9].*")}
    return {
        "processes": provenance["processes"],
        "metrics": metrics,
        "markdown": [without_costs(line) for line in (out / "results.md").read_text().splitlines()],
        "csv": [{k: v for k, v in r.items() if k not in TIMING} for r in rows],
        "evals": {name: {k: v for k, v in r.items() if k != "seconds"} for name, r in evals.items()},
        "sets": {p.parent.name: distilled(p) for p in (out / "sets").glob("*/distilled.safetensors")},
        "networks": networks,
        "manifests": {name: (out / name).read_bytes() for name in ("teachers/pool.json", "experts/experts.json")},
    }


def distilled(path: Path) -> tuple[dict, dict]:
    """A distilled set's tensors (as bytes) and metadata, its build time left out."""
    tensors, meta = read_safetensors(path)
    meta.pop("distill_seconds", None)
    return {k: v.numpy().tobytes() for k, v in tensors.items()}, meta


def without_costs(line: str) -> str:
    """A line of results.md without the build-seconds and peak-memory cells of the accuracy table."""
    cells = line.split("|")
    return "|".join(cells[:-3] + cells[-1:]) if len(cells) == 11 else line


def same_work(a: dict, b: dict) -> None:
    for key in a:
        if key != "processes":
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """One comparison (teacher and expert pools, sets, evaluations) by one process and by two."""
    root = tmp_path_factory.mktemp("ranks")
    one_process(image_app, *COMPARE, "--out", str(root / "one"))
    proc = cli("image", *COMPARE, "--out", str(root / "two"), torchrun=2)
    assert proc.stdout.count("run directory:") == 1  # rank 0 alone prints the tables
    return root


def test_compare_on_two_processes_writes_what_one_process_writes(compared):
    one, two = results(compared / "one"), results(compared / "two")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(one["evals"]) == 4 + 2 * 2 * 3 + 2 + 1  # baselines, mtt and herding x IPCs x rows, random on mlp, full
    assert sorted(one["networks"]) == [
        "experts/expert_0.safetensors",
        "experts/expert_1.safetensors",
        "teachers/teacher_0.json",
        "teachers/teacher_0.safetensors",
        "teachers/teacher_1.json",
        "teachers/teacher_1.safetensors",
    ]
    assert one["networks"]["teachers/teacher_0.safetensors"] != one["networks"]["teachers/teacher_1.safetensors"]
    assert len(one["sets"]) == 6 and len({r["mean"] for r in one["metrics"]["rows"]}) > 10
    same_work(one, two)


def _stop_part_way(run: Path, every: int) -> None:
    """Leave `run` as a kill leaves it: results whole (each file is written atomically) or absent (here every
    `every`-th evaluation, two sets, a network of each pool and the pools' manifests, written last), a temporary
    file of an unfinished write, no tables."""
    for name in ("metrics.json", "results.md", "results.csv", "teachers/pool.json", "experts/experts.json"):
        (run / name).unlink()
    for i, path in enumerate(sorted((run / "evals").glob("*.json"))):
        if i % every == 0:
            path.unlink()
    for name in ("sets/herding_ipc2", "sets/mtt_ipc2"):
        shutil.rmtree(run / name)
    for name in ("teachers/teacher_1.safetensors", "teachers/teacher_1.json", "experts/expert_0.safetensors"):
        (run / name).unlink()
    (run / "evals" / ".full.json.4242.tmp").write_text('{"mean": ')


def test_a_stopped_two_process_run_resumes_in_one_process(compared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(compared / "two", run)
    _stop_part_way(run, every=2)
    one_process(image_app, *COMPARE, "--out", str(run))
    same_work(results(run), results(compared / "one"))


def test_a_stopped_one_process_run_resumes_on_more_processes_than_work_left(compared, tmp_path):
    """One network per pool, two sets and four evaluations left for two processes: the second one idles while
    the first trains each pool's network."""
    run = tmp_path / "run"
    shutil.copytree(compared / "one", run)
    _stop_part_way(run, every=6)
    proc = cli("image", *COMPARE, "--out", str(run), torchrun=2)
    assert "Traceback" not in proc.stderr
    resumed = results(run)
    assert resumed["processes"] == 2
    same_work(resumed, results(compared / "one"))


def test_an_error_on_rank_zero_stops_every_rank_with_one_line(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"seed": 5}))
    proc = cli("image", *COMPARE, "--out", str(out), torchrun=2, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]
    assert all("holds a run with a different config" in line for line in errors)


def test_text_eval_runs_on_two_processes_equal_one_process(tmp_path):
    from distillkit.data.text import load_text_dataset
    from distillkit.text.synthetic import save_text_set

    train = load_text_dataset("fine_foods", seed=0).train
    small = train.subset([i for c in (0, 1) for i in (train.labels == c).nonzero()[0][:4]])
    prov = {"label_names": small.label_names, "text_fields": small.text_fields, "metric": small.metric}
    save_text_set(small, tmp_path / "set", {**prov, "dataset": "fine_foods"})
    args = ["eval", "--set-path", str(tmp_path / "set"), "--learner", "tiny-bert", "--runs", "3", "--steps", "4"]
    args += ["--lr", "0.003", "--max-test", "40", "--device", "cpu"]
    one_process(text_app, *args, "--out", str(tmp_path / "one.json"))
    cli("text", *args, "--out", str(tmp_path / "two.json"), torchrun=2)
    one = json.loads((tmp_path / "one.json").read_text())
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert len(one["runs"]) == 3 and len({r["seed"] for r in one["runs"]}) == 3
    assert len({r["macro_f1"] for r in one["runs"]}) > 1  # the runs differ: their order is checked too


def test_share_deals_the_unfinished_items_round_robin(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    shares = {}
    for r in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares[r] = distributed.share(range(10), done=lambda i: i in (0, 4))
    assert shares == {0: [1, 5, 8], 1: [2, 6, 9], 2: [3, 7]}
    monkeypatch.setattr(distributed, "world_size", lambda: 5)
    assert distributed.share(["only"]) == []  # rank 2 of 5, one item: nothing to do, no error


def test_only_the_ranks_of_the_job_holding_the_lock_write_there(tmp_path, monkeypatch):
    import distillkit.runs as runs

    monkeypatch.setattr(runs, "job_token", lambda: "job-a")
    monkeypatch.setattr(runs, "rank", lambda: 0)
    leader = Run(tmp_path / "run", {"seed": 0})
    assert (tmp_path / "run" / ".lock").read_text() == "job-a"
    monkeypatch.setattr(runs, "rank", lambda: 1)
    Run(tmp_path / "run", {"seed": 0})  # a rank of the same job shares the directory
    monkeypatch.setattr(runs, "job_token", lambda: "job-b")
    with pytest.raises(UserError, match="not held by rank 0 of this torchrun job"):
        Run(tmp_path / "run", {"seed": 0})
    with pytest.raises(UserError, match="not held by rank 0 of this torchrun job"):
        Run(tmp_path / "other", {"seed": 0})  # its rank 0 has not taken it
    leader.close()


@pytest.mark.slow
def test_dilm_run_on_two_processes_equals_one_process(tmp_path):
    """Stage 1 on rank 0, the (method, set) units shared: the same result files and metrics as one process."""
    settings = ['generator="tiny-gpt2"', 'learner="tiny-bert"', "max_length=20", "max_train=48"]
    settings += ["max_validation=16", "max_test=24", "oversample=2", "num_sets=2", "runs_per_set=2"]
    settings += ["gen_batch_size=16", "stage1.steps=3", "stage1.batch_size=8", "finetune.steps=3"]
    settings += ["finetune.batch_size=8", "full_finetune.steps=3", "full_runs=2", 'checkpoint="last"']
    settings += ['methods=["vanilla_lm","random","herding","full"]']
    args = ["run", "--dpc", "2", "--dpc", "3", "--quiet", "--device", "cpu"]
    args += [arg for s in settings for arg in ("--set", s)]
    one_process(text_app, *args, "--out", str(tmp_path / "one"))
    cli("text", *args, "--out", str(tmp_path / "two"), torchrun=2)

    def scores(out: Path) -> tuple[dict, dict]:
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "results").rglob("*.json")}
        metrics = json.loads((out / "metrics.json").read_text())
        return files, {k: v for k, v in metrics.items() if k not in ("provenance", "seconds")}

    one, two = scores(tmp_path / "one"), scores(tmp_path / "two")
    assert len(one[0]) == 2 * 2 * 2 + 2 + 1  # vanilla_lm and random: 2 DPCs x 2 sets; herding: 1 set; full
    assert one == two
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["provenance"]["processes"] == 2
