"""The server backend at scale: a cache shared by threads and processes, refused parameters, reasoning
replies, bounded waiting, and credentials kept out of messages and saved files (loopback servers only)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_lm_openai import MSG, ScriptedServer, client

from distillkit.cli.common import run_app
from distillkit.cli.dialogbench import app
from distillkit.dialogbench.evaluate import EvalSettings, evaluate
from distillkit.errors import UserError
from distillkit.lm import GenerationConfig
from distillkit.lm.cache import ResponseCache
from distillkit.lm.reasoning import answer_text, split_reasoning
from distillkit.lm.secrets import mask_secrets, mask_url

ROOT = Path(__file__).resolve().parents[1]


def convs(n: int, tag: str = "q") -> list[list[dict]]:
    return [[{"role": "user", "content": f"{tag}{i}"}] for i in range(n)]


def asked(srv: ScriptedServer) -> list[str]:
    """The last user message of every request the server received, in order."""
    return [b["messages"][-1]["content"] for b in srv.bodies]


def cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """Run `dialogbench ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        run_app(app, args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def server():
    srv = ScriptedServer(answer=lambda msgs: "The answer is B.")
    yield srv
    srv.stop()


# ------------------------------------------------------------------ the cache
def test_chat_inside_a_running_event_loop_uses_the_cache(server, tmp_path):
    lm = client(server.url, tmp_path)

    async def notebook_cell():  # what Jupyter does: the loop is already running when chat() is called
        return lm.chat([MSG]), lm.chat([MSG])

    first, second = asyncio.run(notebook_cell())
    assert first == second == ["The answer is B."]
    assert server.requests == 1 and lm.usage["cache_hits"] == 1


CHILD = """
import sys
from distillkit.lm.openai_compat import OpenAICompatLM
url, cache, tag, start = sys.argv[1:5]
import time
while time.time() < float(start):
    time.sleep(0.01)
convs = [[{"role": "user", "content": f"{tag}{i}"}] for i in range(30)]
convs += [[{"role": "user", "content": f"shared{i}"}] for i in range(10)]
lm = OpenAICompatLM(model="m", base_url=url, cache_dir=cache, concurrency=4, backoff=0.01)
assert len(lm.chat(convs)) == 40
"""


def test_two_processes_write_one_cache_at_once(tmp_path):
    srv = ScriptedServer(answer=lambda msgs: msgs[-1]["content"].upper())
    try:
        start = str(time.time() + 2.5)  # both children past their imports, then they write together
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        procs = [
            subprocess.Popen([sys.executable, "-c", CHILD, srv.url, str(tmp_path), tag, start], env=env)
            for tag in ("a", "b")
        ]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        srv.stop()
    everything = convs(30, "a") + convs(30, "b") + convs(10, "shared")
    lm = client(srv.url, tmp_path)  # the server is gone: every answer must come from the cache
    assert lm.chat(everything) == [c[-1]["content"].upper() for c in everything]
    assert lm.usage["cache_hits"] == 70 and lm.usage["requests"] == 0
    assert len(ResponseCache(tmp_path / "responses")) == 70


KILLED = """
import sys
from distillkit.lm.openai_compat import OpenAICompatLM
url, cache = sys.argv[1:3]
convs = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
OpenAICompatLM(model="m", base_url=url, cache_dir=cache, concurrency=1).chat(convs)
"""


def test_a_killed_run_resumes_from_the_cache_without_repeats(tmp_path):
    srv = ScriptedServer(answer=lambda msgs: msgs[-1]["content"].upper(), hold_at=6)
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        proc = subprocess.Popen([sys.executable, "-c", KILLED, srv.url, str(tmp_path)], env=env)
        assert srv.held.wait(60), "the client never sent its 6th request"
        proc.kill()  # SIGKILL while the 6th request is in flight
        proc.wait(timeout=30)
        srv.release.set()
        assert asked(srv) == [f"q{i}" for i in range(6)]
        srv.bodies.clear()
        lm = client(srv.url, tmp_path)
        assert lm.chat(convs(10)) == [f"Q{i}" for i in range(10)]
        assert sorted(asked(srv)) == [f"q{i}" for i in range(5, 10)]  # the 5 finished ones were not asked again
        assert lm.usage["cache_hits"] == 5
    finally:
        srv.stop()


def test_a_corrupt_cache_is_one_line_and_cache_clear_fixes_it(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISTILLKIT_CACHE", str(tmp_path / "dk"))
    folder = tmp_path / "dk" / "responses"
    folder.mkdir(parents=True)
    (folder / "cache.db").write_bytes(b"this is no database" * 300)
    with pytest.raises(UserError, match="response cache at .* is unreadable"):
        client(server.url, tmp_path / "dk")
    args = ["eval", "--model", "m", "--base-url", server.url, "--tasks", "SF", "--limit", "1"]
    args += ["--out", str(tmp_path / "run")]
    code, _, err = cli(capsys, args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: the response cache at")
    assert "dialogbench cache clear" in err and "Traceback" not in err
    code, out, _ = cli(capsys, ["cache", "clear"])
    assert code == 0 and "unreadable (corrupt); removed its files" in out
    code, out, _ = cli(capsys, args)
    assert code == 0 and "(1/1 items)" in out


def test_cache_clear_says_how_many_entries_it_removed(server, tmp_path, capsys):
    client(server.url, tmp_path).chat(convs(3))
    assert cli(capsys, ["cache", "clear", str(tmp_path)])[1].startswith("removed 3 entries from")
    assert cli(capsys, ["cache", "clear", str(tmp_path / "responses")])[1].startswith("removed 0 entries")
    client(server.url, tmp_path).chat(convs(3))
    assert server.requests == 6  # emptied: asked again
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    code, _, err = cli(capsys, ["cache", "clear", str(tmp_path / "other")])
    assert code == 2 and "holds no response cache" in err and (tmp_path / "other" / "notes.txt").exists()


def test_the_cache_keeps_under_its_size_cap(tmp_path):
    cache = ResponseCache(tmp_path, size_mb=1)
    for i in range(3000):  # ~3 MB of values
        cache.put(f"k{i}", {"text": f"{i:04d}" * 250})
    assert len(cache) < 3000 and cache._cache.volume() < 2 * 1024 * 1024
    assert cache.get("k2999") == {"text": "2999" * 250}


# ------------------------------------------------------------------ reasoning models and today's APIs
@pytest.mark.parametrize("name_param", [True, False])
def test_a_refused_parameter_is_sent_once_then_dropped(tmp_path, capsys, name_param):
    srv = ScriptedServer(
        reject={"temperature": "Unsupported value: 'temperature' does not support 0.0 with this model."},
        name_param=name_param,
    )
    try:
        lm = client(srv.url, tmp_path, concurrency=4)
        assert lm.chat(convs(6)) == ["B"] * 6
        assert lm.chat(convs(3, "later")) == ["B"] * 3
    finally:
        srv.stop()
    with_temperature = [b for b in srv.bodies if "temperature" in b]
    assert len(with_temperature) == 1 and len(srv.bodies) == 1 + 9
    assert lm.refused == {"temperature"} and lm.describe()["refused_params"] == ["temperature"]
    assert all("max_tokens" in b and "seed" in b for b in srv.bodies)
    assert capsys.readouterr().err.count("refused the parameter 'temperature'") == 1


def test_a_refused_token_limit_moves_to_max_completion_tokens(tmp_path):
    msg = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
    srv = ScriptedServer(reject={"max_tokens": msg})
    try:
        lm = client(srv.url, tmp_path)
        assert lm.chat(convs(2), GenerationConfig(max_new_tokens=7)) == ["B", "B"]
    finally:
        srv.stop()
    assert [b.get("max_tokens") for b in srv.bodies] == [7, None, None]
    assert [b.get("max_completion_tokens") for b in srv.bodies] == [None, 7, 7]


def test_a_token_limit_refused_under_both_names_stops_with_the_server_message(tmp_path):
    both = "'max_tokens' or 'max_completion_tokens' is too large: 9999"
    srv = ScriptedServer(reject={"max_tokens": both, "max_completion_tokens": both})
    try:
        with pytest.raises(UserError, match="rejected the request.*too large"):
            client(srv.url, tmp_path).chat([MSG], GenerationConfig(max_new_tokens=9999))
    finally:
        srv.stop()
    assert len(srv.bodies) == 2  # tried once under each name, never without a limit


def test_reasoning_is_logged_but_not_read_by_extraction(tmp_path):
    calls = itertools.count()

    def answer(msgs):  # inline think blocks and a separate reasoning field, in turn
        if next(calls) % 2:
            return "<think>Option A looks right. The answer is A. No, wait.</think>The answer is C."
        return {"content": "The answer is C.", "reasoning_content": "The answer is A? No: C."}

    srv = ScriptedServer(answer=answer)
    try:
        lm = client(srv.url, tmp_path)
        s = EvalSettings(model="m", backend="openai", base_url=srv.url, mode="chat", tasks=["SF", "KRG", "DI", "NLI"])
        m = evaluate(s, tmp_path / "run", progress=False, lm=lm)
    finally:
        srv.stop()
    items = [json.loads(x) for x in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert m["complete"] and len(items) == 12
    assert {i["pred"]["lenient"] for i in items} == {"C"} and {i["pred"]["strict"] for i in items} == {None}
    assert all(i["output"].startswith("<think>") and "The answer is A" in i["output"] for i in items)
    assert {i["output"] for i in items} == {
        "<think>Option A looks right. The answer is A. No, wait.</think>The answer is C.",
        "<think>The answer is A? No: C.</think>The answer is C.",
    }


def test_generate_reads_replies_after_the_reasoning(tmp_path):
    from distillkit.dialogbench.generate.replay import ReplayServer
    from distillkit.dialogbench.generate.run import generate, resolve

    srv = ReplayServer(think=True)
    try:
        s = resolve("m", "SF", 20, "en", base_url=srv.url, concurrency=4)
        summ = generate(s, tmp_path / "out", show=False, cache_dir=tmp_path / "c", backoff=0.01, max_retries=1)
    finally:
        srv.stop()
    assert summ["accepted"] == 20 and summ["repaired"] == 0  # the JSON and the judge's letter after the block
    judged = [json.loads(x) for x in (tmp_path / "out" / "judged.jsonl").read_text().splitlines()]
    assert len(judged) == 20 and all(j["output"].startswith("<think>") for j in judged)
    assert {j["gold"] for j in judged} > {"A"}


def test_think_blocks_are_split_from_the_answer():
    assert split_reasoning("<think>a</think>The answer is B.") == ("a", "The answer is B.")
    assert split_reasoning("opened by the template</think> B") == ("opened by the template", "B")
    assert split_reasoning("<think>cut off by the token limit") == ("cut off by the token limit", "")
    assert answer_text("no reasoning here, B") == "no reasoning here, B"


def test_system_prompt_extra_body_and_token_param_reach_the_server(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISTILLKIT_CACHE", str(tmp_path / "dk"))
    extra = {"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}, "temperature": 0.6}
    args = ["eval", "--model", "m", "--base-url", server.url, "--tasks", "SF", "--limit", "2"]
    args += ["--out", str(tmp_path / "run"), "--system-prompt", "Answer with one letter."]
    args += ["--extra-body", json.dumps(extra), "--token-param", "max_completion_tokens", "--max-new-tokens", "9"]
    code, out, err = cli(capsys, args)
    assert code == 0, err
    assert len(server.bodies) == 2
    for body in server.bodies:
        assert body["messages"][0] == {"role": "system", "content": "Answer with one letter."}
        assert body["messages"][1]["role"] == "user" and len(body["messages"]) > 2
        assert body["top_k"] == 20 and body["chat_template_kwargs"] == {"enable_thinking": False}
        assert body["temperature"] == 0.6  # the extra body wins over the greedy default
        assert body["max_completion_tokens"] == 9 and "max_tokens" not in body
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["system_prompt"] == "Answer with one letter." and config["extra_body"] == extra
    for bad, why in (("[1]", "must be a JSON object"), ("{top_k: 1}", "not valid JSON")):
        code, _, err = cli(capsys, [*args[:-6], "--extra-body", bad])
        assert code == 2 and why in err


# ------------------------------------------------------------------ bounded waiting
@pytest.fixture
def silent_server():
    """A loopback socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()
    for c in held:
        c.close()


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_server_that_never_answers_fails_within_the_bound(silent_server, tmp_path, capsys, monkeypatch, command):
    monkeypatch.setenv("DISTILLKIT_CACHE", str(tmp_path / "dk"))
    if command == "eval":
        args = ["eval", "--model", "m", "--tasks", "SF", "--limit", "1"]
    else:
        args = ["generate", "--llm", "m", "--tasks", "SF", "--per-task", "20", "--no-judge"]
    args += ["--base-url", silent_server, "--out", str(tmp_path / "run"), "--timeout", "1", "--max-retries", "1"]
    t0 = time.time()
    code, _, err = cli(capsys, args)
    took = time.time() - t0
    assert code == 2 and took < 10, took  # 2 tries of 1 s, a backoff under 1 s, start-up and clean-up
    assert err.count("\n") == 1 and f"the server at {silent_server} gave no answer within 1 s, 2 times" in err


# ------------------------------------------------------------------ credentials
def test_credentials_are_masked_in_text_and_urls():
    text = mask_secrets(
        "Authorization: Bearer eyJhbGciOi.abc-123 rejected; key sk-proj-AbC123xyz_789 is wrong; "
        'see https://h/v1?api-key=TOPSECRET&x=1 or {"api_key": "k-999"}; max_tokens: 5'
    )
    for secret in ("eyJhbGciOi", "sk-proj", "TOPSECRET", "k-999"):
        assert secret not in text
    assert "Bearer ***" in text and "api-key=***" in text and "max_tokens: 5" in text
    assert mask_url("https://me:hunter2@api.example.com/v1?api-key=TOPSECRET&v=2") == (
        "https://***@api.example.com/v1?api-key=***&v=***"
    )
    assert mask_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_server_error_bodies_are_shown_masked(tmp_path):
    leak = "bad header Authorization: Bearer sk-live-SECRET123 for /v1?api-key=TOPSECRET&user=me"
    srv = ScriptedServer([(400, leak), (500, leak), (500, leak)])
    try:
        with pytest.raises(UserError) as e:
            client(srv.url, tmp_path).chat([MSG])
        with pytest.raises(UserError) as e2:
            client(srv.url, tmp_path, max_retries=1).chat([[{"role": "user", "content": "other"}]])
    finally:
        srv.stop()
    for err in (str(e.value), str(e2.value)):
        assert "SECRET123" not in err and "TOPSECRET" not in err
    assert "Bearer ***" in str(e.value) and "api-key=***" in str(e.value)


def test_url_credentials_never_reach_saved_files_or_the_terminal(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISTILLKIT_CACHE", str(tmp_path / "dk"))
    url = server.url.replace("http://", "http://me:hunter2@") + "?api-key=TOPSECRET"
    args = ["eval", "--model", "m", "--base-url", url, "--tasks", "SF", "--limit", "1"]
    code, out, err = cli(capsys, [*args, "--out", str(tmp_path / "run")])
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert config["base_url"] == metrics["backend"]["base_url"] == mask_url(url)
    assert server.paths == ["/v1/chat/completions?api-key=TOPSECRET"]  # the query goes with every request
    server.stop()  # now a failure prints the URL
    code, out2, err2 = cli(capsys, [*args, "--tasks", "KRG", "--out", str(tmp_path / "run2"), "--max-retries", "0"])
    assert code == 2 and "***@127.0.0.1" in err2
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md"):
            assert "hunter2" not in f.read_text() and "TOPSECRET" not in f.read_text(), f
    for text in (out, err, out2, err2):
        assert "hunter2" not in text and "TOPSECRET" not in text


def test_generate_saves_masked_urls(tmp_path):
    from distillkit.dialogbench.generate.run import resolve

    s = resolve("m", "SF", 20, "en", base_url="https://me:pw@h/v1?key=K1", judge_base_url="https://h/v1?token=T2")
    saved = json.dumps(s.saved()) + json.dumps(s.fixed())
    assert "pw@" not in saved and "K1" not in saved and "T2" not in saved
    assert s.fixed()["base_url"] == "https://***@h/v1?key=***"
