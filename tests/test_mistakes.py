"""Every mistake ends in one clear line: `distill` and `dialogbench` run as subprocesses with bad inputs.

For each case: exit code != 0, exactly one non-empty line on stderr, starting with "error:" and holding the
expected text, no traceback, and nothing in the workspace (an --out folder that already holds files, the other
files the case reads) created, changed or removed. Most cases are refused before any work.

Placeholders: {out} a run folder already holding files, {file} a plain file, {dir} an empty folder,
{missing} a path that does not exist, {json} / {jsonl} / {yaml} corrupt files of that kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = {
    "distill": "from distillkit.cli.distill import main; main()",
    "dialogbench": "from distillkit.cli.dialogbench import main; main()",
}
DEAD_SERVER = "http://127.0.0.1:9/v1"

# (program, arguments, text the one error line must hold)
CASES = [
    # usage: unknown or missing options and arguments
    ("distill", "image run --bogus", "No such option: --bogus"),
    ("distill", "image distill --out {out}", "Missing option '--teachers'"),
    ("distill", "image eval", "Missing argument 'distilled'"),
    ("distill", "text run", "Missing option '--out'"),
    ("dialogbench", "import {dir}", "Missing option '--out'"),
    ("dialogbench", "eval --model m --bogus", "No such option: --bogus"),
    # numbers: zero, negative, fractional, huge, not a number
    ("distill", "image run --ipc 0 --out {out}", "'--ipc': should be greater than or equal to 1"),
    ("distill", "image run --ipc -2 --out {out}", "'--ipc': should be greater than or equal to 1"),
    ("distill", "image run --ipc 2.5 --out {out}", "'--ipc'"),
    ("distill", "image run --size 100000 --out {out}", "'--size': should be less than or equal to 1024"),
    ("distill", "image teacher --seed 99999999999999999999 --out {out}", "'--seed'"),
    ("distill", "image teacher --epochs 0 --out {out}", "--epochs: got 0, should be greater than or equal to 1"),
    ("distill", "image teacher --width 0 --out {out}", "'--width'"),
    ("distill", "image experts --lr -1 --out {out}", "--lr: got -1.0, should be greater than 0"),
    ("distill", "image eval {missing} --runs 0", "--runs: got 0"),
    ("distill", "image compare --ipc 1,x --out {out}", "comma-separated list of int"),
    ("distill", "text run --out {out} --dpc 0", "'--dpc': should be greater than or equal to 1"),
    ("distill", "text generate --generator {dir} --dpc 0 --out {out}", "'--dpc'"),
    ("distill", "text icl --set-path {dir} --shots-per-class 0", "'--shots-per-class'"),
    ("dialogbench", "eval --model m --max-new-tokens abc", "'--max-new-tokens'"),
    ("dialogbench", "generate --llm x --per-task 0 --out {out}", "--per-task must be at least 1"),
    # settings: bad values, unknown keys, not key=value, a typed flag against --set
    ("distill", "image distill --teachers {dir} --set apm.ipc=abc --out {out}", "apm.ipc: got 'abc', should be a"),
    ("distill", "image distill --teachers {dir} --set apm.ipc=2.5 --out {out}", "got 2.5, should be a valid integer"),
    ("distill", "image distill --teachers {dir} --set apm.foo=1 --out {out}", "unknown setting apm.foo (given 1)"),
    ("distill", "image distill --teachers {dir} --set foo=1 --out {out}", "unknown setting foo (given 1); known"),
    ("distill", "image distill --teachers {dir} --set apm.discrepancy=l3 --out {out}", "should be 'l1', 'mse' or"),
    ("distill", "image distill --teachers {dir} --set segment_size=50 --out {out}", "write --set apm.segment_size=50"),
    ("distill", "image teacher --set teacher.epochs=0 --out {out}", "teacher.epochs: got 0, should be greater than"),
    ("distill", "image experts --set experts.typo=1 --out {out}", "unknown setting experts.typo (given 1)"),
    ("distill", "image eval {missing} --set eval.loss=l7", "eval.loss: got 'l7'"),
    ("distill", "image compare --set dm.iterations=0 --out {out}", "dm.iterations: got 0"),
    ("distill", "image tune --set mtt.nope=1 --out {out}", "unknown setting mtt.nope (given 1)"),
    ("distill", "image run --preset nosuch --out {out}", "unknown preset 'nosuch'; choose one of paper, quick"),
    ("distill", "image run --device cuda:7 --out {out}", "--device cuda:7 asks for"),
    ("distill", "image run --device tpu --out {out}", "--device 'tpu' is not a device"),
    ("distill", "image eval {missing} --label-mode foo", "--label-mode: got 'foo', should be 'soft' or 'hard'"),
    ("distill", "image run --set apm.iterations --out {out}", "is not key=value"),
    ("distill", "image run --set apm.foo=1 --out {out}", "apm.foo"),
    ("distill", "image run --ipc 4 --set apm.ipc=3 --out {out}", "--ipc 4 and --set apm.ipc=3 disagree"),
    ("distill", "image run --seed 8 --set seed=7 --out {out}", "--seed 8 and --set seed=7 disagree"),
    ("distill", "text run --out {out} --set foo=1", "unknown setting foo (given 1); known here:"),
    ("distill", "text run --out {out} --set gm.nope=1", "unknown setting gm.nope (given 1); known here:"),
    ("distill", "text run --out {out} --set gm.outer_loops=abc", "gm.outer_loops: got 'abc'"),
    ("distill", "text run --out {out} --seed 3 --set seed=4", "--seed 3 and --set seed=4 disagree"),
    ("distill", "text run --out {out} --preset nosuch", "unknown preset 'nosuch'"),
    ("dialogbench", "eval --model m --mode both --out {out}", "--mode"),
    ("dialogbench", "eval --model m --tasks SF,NOPE --out {out}", "unknown task 'NOPE'"),
    # files: missing, a folder where a file is expected (and back), corrupt, not creatable
    ("distill", "image run --config {missing} --out {out}", "does not exist"),
    ("distill", "image run --config {dir} --out {out}", "is a directory; pass a YAML or JSON file"),
    ("distill", "image run --config {yaml} --out {out}", "is not valid YAML/JSON"),
    ("distill", "image run --dataset digits --out {file}", "is a file, not a directory"),
    ("distill", "image teacher --dataset digits --out /proc/distillkit/x", "cannot create directory /proc/distillkit"),
    ("distill", "image distill --teachers {missing} --out {out}", "--teachers"),
    ("distill", "image eval {missing}", "does not exist"),
    ("distill", "image eval {dir}", "is a directory; pass a distilled-set file"),
    ("distill", "image eval {json}", "not a readable distillkit safetensors file"),
    ("distill", "image eval {missing} --out {dir}", "is a directory; pass a file path"),
    ("distill", "text run --out {out} --config {json}", "is not valid YAML/JSON"),
    ("distill", "text run --out {out} --config {missing}", "does not exist"),
    ("distill", "text run --out {file}", "is a file, not a directory"),
    ("distill", "text eval --set-path {dir}", "is not a saved text set"),
    ("distill", "text generate --generator {missing} --dpc 2 --out {out}", "is not a folder"),
    ("dialogbench", "validate {missing}", "does not exist"),
    ("dialogbench", "validate {dir}", "is a folder"),
    ("dialogbench", "validate {jsonl}", "malformed JSON"),
    ("dialogbench", "export {jsonl} --out {out}", "malformed JSON"),
    ("dialogbench", "report {dir}", "has no metrics.json"),
    ("dialogbench", f"eval --model m --base-url {DEAD_SERVER} --out {{file}}", "is a file, not a directory"),
    ("dialogbench", "export-lm-eval --out {file}", "not a directory"),
    ("dialogbench", "eval --model m --limit 0 --out {out}", "--limit"),
    ("dialogbench", "eval --model m --batch-size 0 --out {out}", "--batch-size"),
    ("dialogbench", f"eval --model m --base-url {DEAD_SERVER} --concurrency 0 --out {{out}}", "--concurrency"),
]


def _workspace(root: Path) -> dict[str, Path]:
    """The files and folders the cases point at; {out} already holds an earlier run's files."""
    out = root / "out"
    out.mkdir()
    (out / "config.json").write_text('{"keep": "me"}\n')
    (out / "notes.txt").write_bytes(b"earlier work\x00\xff")
    (root / "empty").mkdir()
    (root / "plain.txt").write_text("a plain file\n")
    (root / "corrupt.json").write_text('{"seed": 1,')
    (root / "corrupt.jsonl").write_text('{"id": 1\n')
    (root / "corrupt.yaml").write_text("apm: [1\n")
    return {
        "out": out,
        "file": root / "plain.txt",
        "dir": root / "empty",
        "missing": root / "missing" / "nothing.json",
        "json": root / "corrupt.json",
        "jsonl": root / "corrupt.jsonl",
        "yaml": root / "corrupt.yaml",
    }


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("program", "args", "expected"), CASES)
def test_a_mistake_ends_in_one_line(tmp_path, program, args, expected):
    paths = _workspace(tmp_path)
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args.split()]
    before = _snapshot(tmp_path)
    env = {**os.environ, "DISTILLKIT_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAMS[program], *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # commands that fall back to a default run folder write nothing into the repository
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert expected in lines[0], lines[0]
    assert _snapshot(tmp_path) == before
