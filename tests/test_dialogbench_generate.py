"""DialogBench generation against a real OpenAI-compatible server on 127.0.0.1 (the replay server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app
from distillkit.dialogbench.generate.replay import ReplayServer
from distillkit.dialogbench.generate.run import generate, resolve
from distillkit.dialogbench.schema import read_jsonl
from distillkit.errors import UserError

FAST = {"backoff": 0.01, "max_backoff": 0.02, "max_retries": 3}


@pytest.fixture
def server():
    srv = ReplayServer()
    yield srv
    srv.stop()


def _run(srv, tmp_path, tasks="SF,RC", per_task=20, out="out", **kw):
    s = resolve(
        "gen-model",
        tasks,
        per_task,
        kw.pop("lang", "en"),
        kw.pop("rounding", None),
        base_url=srv.url,
        concurrency=kw.pop("concurrency", 4),
        **kw,
    )
    return generate(s, tmp_path / out, show=False, cache_dir=tmp_path / "cache", **FAST)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_generate_validates_repairs_filters_and_writes_everything(server, tmp_path):
    server.script = ["invalid", 503, "missing_key", "ok", "short", "ok", "leak", "dup_options", "ok", "dup"]
    server.judge_wrong_every = 6
    summ = _run(server, tmp_path)
    out = tmp_path / "out"
    assert summ["planned"] == 40 and summ["generated"] == 40 and summ["complete"]
    # every generation request carried the JSON schema; two replies were repaired (invalid JSON, missing key)
    assert server.counts["response_format"] == server.counts["generate"] == 40 + 2 + 1  # + 1 HTTP 503 retry
    gen = {r["key"]: r for r in _lines(out / "generated.jsonl")}
    assert len(gen) == 40 and all(r["status"] == "valid" for r in gen.values())
    assert sorted(len(r["errors"]) for r in gen.values())[-3:] == [0, 1, 1] and summ["repaired"] == 2
    reasons = summ["rejected_by_reason"]
    assert reasons.get("dialogue_length") == 1 and reasons.get("answer_leak") == 1
    assert reasons.get("duplicate_options") == 1 and reasons.get("duplicate_dialogue") == 1
    judged = _lines(out / "judged.jsonl")
    assert len(judged) == 36 and reasons.get("judge_wrong", 0) == sum(not r["kept"] for r in judged) > 0
    assert summ["accepted"] == 40 - summ["rejected"]
    rejects = _lines(out / "rejects.jsonl")
    assert len(rejects) == summ["rejected"] and all(r["reason"] for r in rejects)
    accepted = read_jsonl(out / "instances.jsonl")  # strict schema read
    assert len(accepted) == summ["accepted"]
    for inst in accepted:
        p = inst.provenance
        assert p["gold_position"] == inst.label and p["generator"] == "gen-model"
        assert p["mitigation"] == {"domain_balance": True, "style_mix": True, "position_balance": True}
        assert len(p["styles"]) == 2 and p["filter"]["judge_answer"] == inst.label
    # gold letters as planned: exact balance before filtering
    planned = Counter(r["job"]["gold"] for r in gen.values())
    assert planned == {"A": 10, "B": 10, "C": 10, "D": 10}
    assert Counter(r["job"]["domain"] for r in gen.values() if r["job"]["task"] == "SF").most_common()[-1][1] == 1
    assert (out / "official/data_en/Slot_Filling.json").exists() and (out / "official/data_en/Relation_Question.json")
    sheet = json.loads((out / "datasheet.json").read_text())
    assert sum(sheet["counts"]["answer_position"].values()) == summ["accepted"]
    assert sheet["counts"]["rejection_reason"] == reasons
    assert (out / "datasheet.png").stat().st_size > 10_000 and "Per speaker style" in (out / "datasheet.md").read_text()


def test_generated_set_is_evaluated_without_conversion(server, tmp_path, capsys):
    _run(server, tmp_path, tasks="SF,PRG")
    data = tmp_path / "out" / "instances.jsonl"
    run_dir = tmp_path / "eval"
    os.environ["DISTILLKIT_CACHE"] = str(tmp_path / "cache")
    try:
        run_app(
            app,
            [
                "eval",
                "--model",
                "judge",
                "--base-url",
                server.url,
                "--mode",
                "chat",
                "--data",
                str(data),
                "--out",
                str(run_dir),
            ],
        )
    finally:
        del os.environ["DISTILLKIT_CACHE"]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_done"] == 40 and m["tasks"]["SF"]["accuracy"] == 100.0 and m["tasks"]["PRG"]["accuracy"] == 100.0


def test_mitigations_off_are_recorded(server, tmp_path):
    summ = _run(
        server,
        tmp_path,
        tasks="CRG",
        per_task=8,
        domain_balance=False,
        style_mix=False,
        position_balance=False,
        judge=False,
    )
    assert summ["accepted"] == 8
    insts = read_jsonl(tmp_path / "out" / "instances.jsonl")
    assert {i.domain for i in insts} == {"unspecified"} and {i.label for i in insts} == {"A"}  # the model's choice
    assert all(
        i.provenance["mitigation"]["position_balance"] is False and i.provenance["styles"] is None for i in insts
    )
    assert server.counts["judge"] == 0


def test_budget_cap_stops_and_resume_finishes_without_regenerating(server, tmp_path):
    summ = _run(server, tmp_path, tasks="SF", max_requests=7, judge=False)
    assert server.counts["requests"] == 7 and summ["generated"] == 7 and summ["budget_reached"]
    assert not summ["complete"] and summ["accepted"] == 7
    summ = _run(server, tmp_path, tasks="SF", judge=False)
    assert server.counts["requests"] == 20 and summ["complete"] and summ["accepted"] == 20
    recs = _lines(tmp_path / "out" / "generated.jsonl")
    assert len(recs) == len({r["key"] for r in recs}) == 20


def test_token_budget(server, tmp_path):
    summ = _run(server, tmp_path, tasks="SF", max_tokens=1, judge=False, concurrency=1)
    assert summ["budget_reached"] and summ["generated"] == server.counts["requests"] == 8  # one batch, then stop


def test_resume_after_kill_loses_and_repeats_nothing(tmp_path):
    srv = ReplayServer(delay=0.05)
    try:
        cmd = [
            sys.executable,
            "-c",
            "from distillkit.cli.dialogbench import main; main()",
            "generate",
            "--llm",
            "m",
            "--base-url",
            srv.url,
            "--tasks",
            "SF,IC",
            "--per-task",
            "20",
            "--out",
            str(tmp_path / "out"),
            "--concurrency",
            "2",
        ]
        env = {**os.environ, "DISTILLKIT_CACHE": str(tmp_path / "cache"), "DISTILLKIT_PROGRESS": "0"}
        log = tmp_path / "out" / "generated.jsonl"
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 10):
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        before = log.read_text().splitlines()
        assert 10 <= len(before) < 40
        sent = srv.counts["generate"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        after = log.read_text().splitlines()
        keys = [json.loads(x)["key"] for x in after]
        assert len(keys) == len(set(keys)) == 40 and after[: len(before)] == before
        # only jobs not finished before the kill were asked again (the ones in flight at most once more)
        assert srv.counts["generate"] - sent <= 40 - len(before) + 2
        assert "accepted 40 of 40 planned (40 generated, 0 after a repair)" in done.stdout
        assert len(read_jsonl(tmp_path / "out" / "instances.jsonl")) == 40
    finally:
        srv.stop()


def _cli_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as e:
        run_app(app, args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    return err


def test_bad_input_gives_one_line(capsys, tmp_path):
    base = ["generate", "--llm", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")]
    assert "unknown task 'XX'" in _cli_error(capsys, [*base, "--tasks", "SF,XX"])
    assert "unknown language 'fr'" in _cli_error(capsys, [*base, "--lang", "fr"])
    err = _cli_error(capsys, [*base, "--per-task", "30"])
    assert "--per-task 30 cannot be split evenly over 20 domains; use --per-task 20 or 40" in err
    assert "--round must be up or down" in _cli_error(capsys, [*base, "--round", "sideways"])
    assert not (tmp_path / "o").exists()


def test_unreachable_server_is_one_line(tmp_path):
    s = resolve("m", "SF", 20, "en", base_url="http://127.0.0.1:9/v1", concurrency=2)
    with pytest.raises(UserError, match=r"^cannot reach the server at http://127.0.0.1:9/v1 after 3 retries"):
        generate(s, tmp_path / "out", show=False, cache_dir=tmp_path / "cache", **FAST)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["generated"] == 0


def test_model_that_never_returns_valid_json_stops_and_keeps_finished_work(server, tmp_path):
    server.script = ["ok"] * 5
    server.always = "invalid"
    with pytest.raises(
        UserError,
        match=r"returned no usable instance for 1\d jobs in a row, each tried 3 times "
        r"\(last problem: not valid JSON",
    ):
        _run(server, tmp_path, tasks="SF", concurrency=1)
    recs = _lines(tmp_path / "out" / "generated.jsonl")
    assert sum(r["status"] == "valid" for r in recs) == 5
    assert all(r["reason"].startswith("invalid_output: not valid JSON") for r in recs if r["status"] == "invalid")
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summ["valid"] == 5 and summ["rejected_by_reason"]["invalid_output"] >= 10
    # a working model later resumes: finished instances are kept, nothing is regenerated
    server.always = None
    summ = _run(server, tmp_path, tasks="SF", concurrency=1)
    assert summ["complete"] and summ["valid"] == 20 - summ["rejected_by_reason"]["invalid_output"]


def test_chinese_generation(server, tmp_path):
    summ = _run(server, tmp_path, tasks="ED", lang="zh", judge=True)
    insts = read_jsonl(tmp_path / "out" / "instances.jsonl")
    assert summ["accepted"] == 20 and {i.language for i in insts} == {"zh"} and "医学" in {i.domain for i in insts}
    assert (tmp_path / "out" / "official/data_zh/emotion_1012.json").exists()


def test_separate_judge_model_and_server(server, tmp_path):
    judge_srv = ReplayServer(judge_wrong_every=3)
    try:
        summ = _run(server, tmp_path, tasks="NLI", judge_llm="judge-model", judge_base_url=judge_srv.url)
    finally:
        judge_srv.stop()
    assert server.models == {"generate:gen-model": 20} and judge_srv.models == {"judge:judge-model": 20}
    insts = read_jsonl(tmp_path / "out" / "instances.jsonl")
    assert summ["accepted"] == len(insts) == 20 - summ["rejected_by_reason"]["judge_wrong"] < 20
    assert {i.provenance["filter"]["judge"] for i in insts} == {"judge-model"}


def test_server_without_json_schema_support_names_the_switch(server, tmp_path):
    server.script = [400]
    with pytest.raises(UserError, match=r"rejected the request \(HTTP 400.*add --no-json-schema$"):
        _run(server, tmp_path, tasks="SF", concurrency=1)
    with_schema = server.counts["response_format"]
    summ = _run(server, tmp_path, tasks="SF", out="plain", json_schema=False, judge=False)
    assert summ["accepted"] == 20 and server.counts["response_format"] == with_schema > 0


@pytest.mark.slow
def test_real_transformers_server_with_a_tiny_model(tmp_path):
    """`transformers serve` accepts the JSON-schema requests; a random tiny model never writes valid JSON."""
    import socket
    import urllib.request

    from distillkit.lm.offline import tiny_llama_folder

    folder = str(tiny_llama_folder())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    exe = Path(sys.executable).with_name("transformers")
    proc = subprocess.Popen(
        [str(exe), "serve", folder, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, "transformers serve exited early"
                time.sleep(0.5)
        s = resolve(
            folder,
            "SF",
            20,
            "en",
            base_url=f"http://127.0.0.1:{port}/v1",
            concurrency=2,
            max_new_tokens=8,
            max_invalid_streak=4,
        )
        with pytest.raises(UserError, match="returned no usable instance for 8 jobs in a row, each tried 3 times"):
            generate(s, tmp_path / "out", show=False, cache_dir=tmp_path / "cache", **FAST)
        summ = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summ["generated"] == 8 and summ["rejected_by_reason"] == {"invalid_output": 8}
        assert summ["usage"]["requests"] == 24 and summ["usage"]["completion_tokens"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
