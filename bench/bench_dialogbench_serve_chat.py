"""DialogBench chat mode through a real local server: `dialogbench eval` vs lm-evaluation-harness.

Starts `transformers serve` on SmolLM2-135M-Instruct (the HF folder converted offline from the bundled GGUF) on
127.0.0.1 and, with the server warm, runs interleaved `dialogbench eval --mode chat` and lm-evaluation-harness's
`local-chat-completions` on distillkit's chat export (`dialogbench export-lm-eval --mode chat`) against it, on the
36 shipped sample instances, each run with fresh output and cache folders. Reports wall times (whole command
lines), accuracy, and per-item agreement of the extracted answers; the server is stopped at the end.

    nice -n 10 .venv/bin/python bench/bench_dialogbench_serve_chat.py --out bench/results/dialogbench_serve_chat.json

lm-eval always sends a `stop` list; with the export's `until: []` it is empty (with `num_concurrent` > 1 lm-eval
leaves out the EOS string even when it knows it), and `transformers serve` then fails in `generate`
(StopStringCriteria rejects an empty list: HTTP 500, dropped connection). So lm-eval gets
`--gen_kwargs until=<the model's EOS token>`: generation ends at that token anyway, so the replies are unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DISTILLKIT_PROGRESS": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
INVALID = "[invalid]"  # lm-eval's answer for a reply without a letter (distillkit.dialogbench.lmeval_chat)
REPLY_CHARS = 160  # how much of a reply a disagreement shows


def tool(name: str) -> str:
    """The console script `name` of this Python environment (else the one on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed in this environment")
    return found


def serve_available() -> bool:
    """`transformers serve` is there: transformers 5.x with its `serving` extra (fastapi, uvicorn, ...)."""
    try:
        if importlib.util.find_spec("transformers.cli.serving.server") is None:
            return False
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        return False
    return is_serve_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE, **extra}


class ServeProcess:
    """`transformers serve FOLDER` on 127.0.0.1 at a free port; `model` is the name it answers to (the folder).

    `threads`: the server's torch threads (OMP_NUM_THREADS; None: torch's default).
    """

    def __init__(self, folder: Path, log: Path, threads: int | None = None, startup_s: float = 240.0):
        self.model = str(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        cmd = [tool("transformers"), "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port)]
        env = offline_env(**({"OMP_NUM_THREADS": str(threads)} if threads else {}))
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self.wait_healthy(startup_s)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, startup_s: float) -> None:
        """Poll `GET /health` until it answers ok; a server that exits or never answers stops the bench."""
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return
            time.sleep(0.5)
        raise RuntimeError(f"transformers serve gave no /health within {startup_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def chat(self, messages: list[dict], max_tokens: int = 16) -> dict:
        """One greedy chat completion (used to warm the server up)."""
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens}
        req = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after 20 s."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def serving(folder: Path, log: Path, threads: int | None = None) -> Iterator[ServeProcess]:
    """A warm server for the block; always stopped after it."""
    server = ServeProcess(folder, log, threads)
    try:
        server.chat([{"role": "user", "content": "Say OK."}])
        yield server
    finally:
        server.stop()


@dataclass
class Run:
    """One command line's result: wall time, the overall score and every item's reply and extracted letter."""

    tool: str
    concurrency: int
    wall_s: float
    tool_s: float  # the time the tool itself reports
    overall: float  # unweighted mean of the task accuracies (lenient), in %
    answers: dict[str, str | None]  # instance id -> letter (None: no answer)
    replies: dict[str, str]

    def summary(self) -> dict:
        return {"concurrency": self.concurrency, "wall_s": round(self.wall_s, 2), "tool_s": round(self.tool_s, 2)}


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Run `cmd` (output to `log`); its wall seconds. A failure stops the bench with the log's end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("wb") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - t0
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{Path(cmd[0]).name} exited {code}:\n{tail}")
    return wall


def run_distillkit(
    server: ServeProcess, folder: Path, concurrency: int, tasks: Sequence[str] | None, limit: int | None
) -> Run:
    """`dialogbench eval --mode chat` against the server, fresh run folder and response cache."""
    cmd = [tool("dialogbench"), "eval", "--mode", "chat", "--base-url", server.url, "--model", server.model]
    cmd += ["--out", str(folder / "run"), "--concurrency", str(concurrency), "--timeout", "600"]
    cmd += (["--tasks", ",".join(tasks)] if tasks else []) + (["--limit", str(limit)] if limit else [])
    return read_distillkit(
        folder, concurrency, timed(cmd, offline_env(DISTILLKIT_CACHE=str(folder / "cache")), folder / "log.txt")
    )


def read_distillkit(folder: Path, concurrency: int, wall: float) -> Run:
    """A finished `dialogbench eval` run folder as a Run."""
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    items = [json.loads(line) for line in (folder / "run" / "items.jsonl").read_text().splitlines()]
    return Run(
        tool="distillkit",
        concurrency=concurrency,
        wall_s=wall,
        tool_s=metrics["seconds"],
        overall=metrics["overall_lenient"],
        answers={it["id"]: it["pred"]["lenient"] for it in items},
        replies={it["id"]: it["output"] for it in items},
    )


def run_lm_eval(
    server: ServeProcess,
    tasks_dir: Path,
    folder: Path,
    concurrency: int,
    tasks: Sequence[str] | None,
    limit: int | None,
    stop: str,
) -> Run:
    """lm-eval `local-chat-completions` on the exported chat tasks against the server, samples logged."""
    model_args = (
        f"model={server.model},base_url={server.url}/chat/completions,tokenizer_backend=None,"
        f"num_concurrent={concurrency},timeout=600"
    )
    names = [f"dialogbench_chat_en_{t.lower()}" for t in tasks] if tasks else ["dialogbench_chat_en"]
    cmd = [tool("lm_eval"), "--model", "local-chat-completions", "--model_args", model_args, "--apply_chat_template"]
    cmd += ["--gen_kwargs", f"until={stop}", "--include_path", str(tasks_dir), "--tasks", ",".join(names)]
    cmd += ["--output_path", str(folder / "out"), "--log_samples"] + (["--limit", str(limit)] if limit else [])
    env = offline_env(HF_DATASETS_CACHE=str(folder.parent / "hf_datasets"))
    return read_lm_eval(folder, concurrency, timed(cmd, env, folder / "log.txt"))


def read_lm_eval(folder: Path, concurrency: int, wall: float) -> Run:
    """A finished lm-eval output folder (results and logged samples) as a Run."""
    (results_file,) = glob.glob(str(folder / "out" / "*" / "results_*.json"))
    results = json.loads(Path(results_file).read_text())
    per_task = [r["exact_match,lenient"] for name, r in results["results"].items() if name != "dialogbench_chat_en"]
    answers, replies = {}, {}
    for path in glob.glob(str(folder / "out" / "*" / "samples_*.jsonl")):
        for line in Path(path).read_text().splitlines():
            sample = json.loads(line)
            if sample["filter"] == "lenient":
                letter = sample["filtered_resps"][0]
                answers[sample["doc"]["id"]] = None if letter == INVALID else letter
                replies[sample["doc"]["id"]] = sample["resps"][0][0]
    return Run(
        tool="lm-eval",
        concurrency=concurrency,
        wall_s=wall,
        tool_s=float(results["total_evaluation_time_seconds"]),
        overall=round(100 * statistics.fmean(per_task), 2),
        answers=answers,
        replies=replies,
    )


def agreement(ours: Run, theirs: Run) -> dict:
    """Per-item comparison of the extracted letters (and of the replies they came from)."""
    if set(ours.answers) != set(theirs.answers):
        raise RuntimeError(f"the runs scored different items: {sorted(set(ours.answers) ^ set(theirs.answers))}")
    ids = sorted(ours.answers)
    both = [i for i in ids if ours.answers[i] and theirs.answers[i]]
    disagreements = [
        {
            "id": i,
            "distillkit": ours.answers[i],
            "lm_eval": theirs.answers[i],
            "why": "different replies" if ours.replies[i] != theirs.replies[i] else "same reply, different extraction",
            "distillkit_reply": ours.replies[i][:REPLY_CHARS],
            "lm_eval_reply": theirs.replies[i][:REPLY_CHARS],
        }
        for i in ids
        if ours.answers[i] != theirs.answers[i]
    ]
    return {
        "items": len(ids),
        "both_answered": len(both),
        "identical_answers": sum(ours.answers[i] == theirs.answers[i] for i in both),
        "identical_replies": sum(ours.replies[i] == theirs.replies[i] for i in ids),
        "disagreements": disagreements,
    }


def eos_string(folder: Path) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder).eos_token


def export_chat_tasks(out: Path) -> Path:
    subprocess.run(
        [tool("dialogbench"), "export-lm-eval", "--mode", "chat", "--out", str(out)],
        check=True,
        env=offline_env(),
        stdout=subprocess.DEVNULL,
    )
    return out


def compare(
    pairs: Sequence[tuple[int, int]] = ((8, 8),),
    rounds: int = 2,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    workdir: Path | None = None,
    server_threads: int | None = 1,
) -> dict:
    """Interleaved runs per round (each distinct distillkit and lm-eval concurrency once, in the order of `pairs`)
    against one warm server; `pairs` are (distillkit, lm-eval) concurrencies compared with each other.
    `server_threads` 1 by default: on a shared, busy CPU two torch threads were 10-20x slower per token than one."""
    from distillkit.lm.offline import smollm2_folder

    if not serve_available():
        raise SystemExit('transformers serve is not available; pip install "transformers[serving]" (transformers 5.x)')
    folder = smollm2_folder()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dialogbench-serve-")))
        else:  # a new folder inside it: a run folder that exists would be resumed, not run
            workdir.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="dialogbench-serve-", dir=workdir))
        tasks_dir = export_chat_tasks(work / "lmeval_chat")
        stop = eos_string(folder)
        runs: list[dict[tuple[str, int], Run]] = []
        load_before = os.getloadavg()[1]
        t0 = time.perf_counter()
        with serving(folder, work / "server.log", server_threads) as server:
            startup_s = time.perf_counter() - t0
            for r in range(rounds):
                done: dict[tuple[str, int], Run] = {}
                for c_ours, c_theirs in pairs:
                    if ("distillkit", c_ours) not in done:
                        where = work / f"r{r}-distillkit-c{c_ours}"
                        done["distillkit", c_ours] = run_distillkit(server, where, c_ours, tasks, limit)
                    if ("lm-eval", c_theirs) not in done:
                        where = work / f"r{r}-lm-eval-c{c_theirs}"
                        done["lm-eval", c_theirs] = run_lm_eval(server, tasks_dir, where, c_theirs, tasks, limit, stop)
                runs.append(done)
        load = {"before": round(load_before, 1), "after": round(os.getloadavg()[1], 1)}
        extra = {"server_threads": server_threads, "load_average_5min": load}
        return summarise(runs, pairs, folder, stop, startup_s) | extra


def summarise(runs: list[dict[tuple[str, int], Run]], pairs, folder: Path, stop: str, startup_s: float) -> dict:
    """The JSON record: per pair the per-round wall times, their ratio, accuracies and agreement."""
    import lm_eval
    import torch
    import transformers

    import distillkit

    compared = []
    for c_ours, c_theirs in pairs:
        ours = [done["distillkit", c_ours] for done in runs]
        theirs = [done["lm-eval", c_theirs] for done in runs]
        compared.append(
            {
                "distillkit_concurrency": c_ours,
                "lm_eval_concurrency": c_theirs,
                "distillkit_wall_s": [round(x.wall_s, 2) for x in ours],
                "lm_eval_wall_s": [round(x.wall_s, 2) for x in theirs],
                "distillkit_tool_s": [round(x.tool_s, 2) for x in ours],
                "lm_eval_tool_s": [round(x.tool_s, 2) for x in theirs],
                "lm_eval_over_distillkit_wall": round(sum(x.wall_s for x in theirs) / sum(x.wall_s for x in ours), 2),
                "distillkit_overall": [x.overall for x in ours],
                "lm_eval_overall": [x.overall for x in theirs],
                "agreement": agreement(ours[0], theirs[0]),
                "identical_answers_per_round": [
                    agreement(a, b)["identical_answers"] for a, b in zip(ours, theirs, strict=True)
                ],
            }
        )
    first = next(iter(runs[0].values()))
    return {
        "model": "SmolLM2-135M-Instruct (fp32 HF folder from the bundled GGUF)",
        "server": "transformers serve (no continuous batching: one generate at a time)",
        "data": "sample (36 English instances, 12 tasks)"
        if len(first.answers) == 36
        else f"{len(first.answers)} items",
        "decoding": "greedy, at most 256 new tokens",
        "extractor": "lenient",
        "lm_eval_gen_kwargs": f"until={stop}",
        "rounds": len(runs),
        "server_startup_s": round(startup_s, 2),
        "replies_stable_across_rounds": all(
            done[key].replies == runs[0][key].replies for done in runs for key in runs[0]
        ),
        "pairs": compared,
        "date": datetime.date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "versions": {
            "distillkit": distillkit.__version__,
            "lm_eval": lm_eval.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "model_folder": folder.name,
    }


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """'8:8,8:1' -> [(8, 8), (8, 1)] (distillkit:lm-eval concurrency)."""
    try:
        pairs = [tuple(int(x) for x in p.split(":")) for p in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"pairs look like 8:8,8:1 (distillkit:lm-eval concurrency), got {text!r}")
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=parse_pairs, default=[(8, 8)], help="distillkit:lm-eval concurrencies")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tasks", help="comma-separated task abbreviations (default: all 12)")
    ap.add_argument("--limit", type=int, help="at most this many instances per task")
    ap.add_argument("--server-threads", type=int, default=1, help="the server's torch threads (0: torch's default)")
    ap.add_argument("--workdir", type=Path, help="keep the runs, logs and server log here (default: a temp folder)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from distillkit.runs import write_json

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server is stopped on SIGTERM too
    tasks = args.tasks.split(",") if args.tasks else None
    res = compare(args.pairs, args.rounds, tasks, args.limit, args.workdir, args.server_threads or None)
    print(json.dumps(res, indent=2))
    if args.out:
        write_json(args.out, res)


if __name__ == "__main__":
    main()
