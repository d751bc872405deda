"""OpenAI-compatible backend: retries, cache, accounting, concurrency, and a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from distillkit.errors import UserError
from distillkit.lm import GenerationConfig
from distillkit.lm.loopback import JSONHandler, LoopbackServer
from distillkit.lm.offline import tiny_llama_folder
from distillkit.lm.openai_compat import OpenAICompatLM


class ScriptedServer(LoopbackServer):
    """A small OpenAI-compatible chat server that plays a script of failures before answering.

    `script` is a list consumed one entry per request: 'ok', 503, 429, 500, 'garbage', 'empty', 'slow', or
    (code, message) for an error with that body message. When the script is empty every request is answered
    'ok'. The reply is `answer(messages)`: the content, or a dict for the whole message (e.g. with
    `reasoning_content`). `reject` maps request fields to the message of an HTTP 400 sent whenever one is
    present (with the OpenAI `param` field unless `name_param=False`). Request bodies and paths are kept.
    With `hold_at=n` the n-th request waits for `release` after setting `held` (to kill a client mid-run).
    """

    def __init__(
        self,
        script=None,
        answer=None,
        port: int = 0,
        delay: float = 0.0,
        reject=None,
        name_param: bool = True,
        hold_at: int | None = None,
    ):
        self.script = list(script or [])
        self.answer = answer or (lambda msgs: "B")
        self.delay = delay
        self.reject = dict(reject or {})
        self.name_param = name_param
        self.hold_at = hold_at
        self.held, self.release = threading.Event(), threading.Event()
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.ok = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: list[str] = []
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):  # noqa: N802
                body = self.read_json()
                with outer.lock:
                    outer.requests += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    step = outer.script.pop(0) if outer.script else "ok"
                    outer.auth_headers.append(self.headers.get("Authorization", ""))
                    outer.bodies.append(body)
                    outer.paths.append(self.path)
                    n = outer.requests
                refused = [k for k in outer.reject if k in body]
                try:
                    if n == outer.hold_at:
                        outer.held.set()
                        outer.release.wait(30)
                        step = 503
                    time.sleep(outer.delay)
                    if step == "slow":
                        time.sleep(3)
                        step = "ok"
                    if refused:
                        err = {"message": outer.reject[refused[0]], "type": "invalid_request_error"}
                        self.send_json(400, {"error": err | ({"param": refused[0]} if outer.name_param else {})})
                    elif isinstance(step, tuple):
                        self.send_json(step[0], {"error": {"message": step[1]}}, {"retry-after": "0"})
                    elif isinstance(step, int):
                        self.send_json(step, {"error": {"message": f"injected {step}"}}, {"retry-after": "0"})
                    elif step == "garbage":
                        self.send_bytes(200, b"<html>definitely not json")
                    elif step == "empty":
                        self.send_json(200, {"id": "x", "object": "chat.completion", "choices": []})
                    else:
                        text = outer.answer(body["messages"])
                        message = text if isinstance(text, dict) else {"content": text}
                        with outer.lock:
                            outer.ok += 1
                        self.send_json(
                            200,
                            {
                                "id": "cmpl-1",
                                "object": "chat.completion",
                                "created": 0,
                                "model": body["model"],
                                "choices": [
                                    {
                                        "index": 0,
                                        "finish_reason": "stop",
                                        "message": {"role": "assistant", **message},
                                    }
                                ],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                            },
                        )
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        super().__init__(Handler, port)


def client(url, tmp_path, **kw):
    kw.setdefault("max_retries", 4)
    return OpenAICompatLM(model="m", base_url=url, backoff=0.01, max_backoff=0.05, cache_dir=tmp_path, **kw)


MSG = [{"role": "user", "content": "pick one"}]


def test_retries_on_429_5xx_and_garbage_then_succeeds(tmp_path):
    srv = ScriptedServer([503, 429, "garbage", 500, "ok"])
    try:
        lm = client(srv.url, tmp_path)
        assert lm.chat([MSG]) == ["B"]
        assert lm.usage["retries"] == 4 and lm.usage["requests"] == 5
        assert lm.usage["prompt_tokens"] == 10 and lm.usage["completion_tokens"] == 2
    finally:
        srv.stop()


def test_cache_answers_repeats_without_the_server(tmp_path):
    srv = ScriptedServer()
    lm = client(srv.url, tmp_path)
    cfg = GenerationConfig(max_new_tokens=5)
    assert lm.chat([MSG, MSG + [{"role": "assistant", "content": "x"}, {"role": "user", "content": "again"}]], cfg)
    srv.stop()
    lm2 = client(srv.url, tmp_path)  # same cache folder, server gone
    assert lm2.chat([MSG], cfg) == ["B"]
    assert lm2.usage["cache_hits"] == 1 and lm2.usage["requests"] == 0
    with pytest.raises(UserError, match="cannot reach the server"):
        lm2.chat([MSG], GenerationConfig(max_new_tokens=6))  # a different request is not cached


def test_gives_up_with_one_clear_line(tmp_path):
    srv = ScriptedServer([503] * 10)
    try:
        with pytest.raises(UserError, match=r"kept failing \(HTTP 503\) after 2 retries"):
            client(srv.url, tmp_path, max_retries=2).chat([MSG])
        srv.script = ["garbage"] * 10
        with pytest.raises(UserError, match="answered garbage"):
            client(srv.url, tmp_path, max_retries=1).chat([[{"role": "user", "content": "other"}]])
        srv.script = ["empty"] * 10
        with pytest.raises(UserError, match="answered garbage"):
            client(srv.url, tmp_path, max_retries=1).chat([[{"role": "user", "content": "third"}]])
    finally:
        srv.stop()


def test_timeouts_are_retried(tmp_path):
    srv = ScriptedServer(["slow", "ok"])
    try:
        lm = client(srv.url, tmp_path, timeout=0.5)
        assert lm.chat([MSG]) == ["B"] and lm.usage["retries"] == 1
    finally:
        srv.stop()


def test_concurrency_limit_and_order(tmp_path):
    srv = ScriptedServer(answer=lambda msgs: msgs[-1]["content"].upper(), delay=0.2)
    try:
        lm = client(srv.url, tmp_path, concurrency=3)
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(9)]
        got = []
        out = lm.chat(convs, on_result=lambda i, t: got.append(i))
        assert out == [f"Q{i}" for i in range(9)]
        assert sorted(got) == list(range(9))
        assert srv.max_in_flight == 3
    finally:
        srv.stop()


def test_api_key_from_env_only_and_never_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("DK_TEST_KEY", "sk-secret-123")
    srv = ScriptedServer()
    try:
        lm = client(srv.url, tmp_path, api_key_env="DK_TEST_KEY")
        lm.chat([MSG])
        assert srv.auth_headers[-1] == "Bearer sk-secret-123"
        assert "sk-secret" not in json.dumps(lm.describe())
        for f in Path(tmp_path).rglob("*"):
            if f.is_file():
                assert b"sk-secret-123" not in f.read_bytes()
    finally:
        srv.stop()


def test_auth_and_bad_request_errors(tmp_path):
    srv = ScriptedServer([401, 400])
    try:
        with pytest.raises(UserError, match="refused the API key"):
            client(srv.url, tmp_path).chat([MSG])
        with pytest.raises(UserError, match="rejected the request"):
            client(srv.url, tmp_path).chat([[{"role": "user", "content": "b"}]])
    finally:
        srv.stop()


# ------------------------------------------------------------------ a real server: `transformers serve`
def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def real_server():
    folder = str(tiny_llama_folder())
    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [str(exe), "serve", folder, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("transformers serve exited early")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("transformers serve did not start")
    yield folder, url + "/v1"
    proc.terminate()
    proc.wait(timeout=30)


def test_real_server_chat_and_usage(real_server, tmp_path):
    folder, url = real_server
    lm = OpenAICompatLM(model=folder, base_url=url, cache_dir=tmp_path, concurrency=2)
    convs = [[{"role": "user", "content": f"Say something about {w}."}] for w in ("cats", "dogs", "rain")]
    out = lm.chat(convs, GenerationConfig(max_new_tokens=4))
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert lm.usage["completion_tokens"] > 0 and lm.usage["prompt_tokens"] > 0
    again = OpenAICompatLM(model=folder, base_url=url, cache_dir=tmp_path)
    assert again.chat(convs, GenerationConfig(max_new_tokens=4)) == out and again.usage["cache_hits"] == 3
    with pytest.raises(UserError, match="rejected the request"):
        OpenAICompatLM(model="no-such-model", base_url=url, cache_dir=False).chat(convs[:1])
