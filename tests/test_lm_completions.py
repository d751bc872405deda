"""Base mode over a server: continuation log-probabilities from `/v1/completions` with echo and logprobs.

A loopback vLLM-style server scores prompts with SmolLM2 itself, so server and local scores must agree; scripted
servers check batching, the cache, retries and the one-line refusal of servers without prompt log-probabilities.
"""

from __future__ import annotations

import math

import pytest
from loopback_logprob_server import LogprobServer, smollm2_scorer, word_scorer
from test_lm_openai import ScriptedServer

from distillkit.dialogbench.evaluate import predict_base
from distillkit.dialogbench.render import base_context
from distillkit.dialogbench.schema import load_sample
from distillkit.errors import UserError
from distillkit.lm import load_local_lm
from distillkit.lm.completions import EchoRequest, OffsetsUnusable, ServerCannotScore, score_choice
from distillkit.lm.openai_compat import OpenAICompatLM

TASKS = ("SF", "RC")  # two answer headers; one instance each keeps the test short on a CPU


def client(url: str, tmp_path, **kw) -> OpenAICompatLM:
    kw.setdefault("max_retries", 3)
    return OpenAICompatLM(model="m", base_url=url, backoff=0.01, max_backoff=0.05, cache_dir=tmp_path, **kw)


def choice(prompt: str, tokens: list[str], logprobs: list[float | None], prefix: str = "", text: str | None = None):
    """An echoed choice as vLLM writes it: offsets are the running length of the tokens' texts."""
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    tops = [None if lp is None else {t: lp} for t, lp in zip(tokens, logprobs, strict=True)]
    return {
        "text": prompt if text is None else text,
        "logprobs": {"text_offset": offsets, "token_logprobs": logprobs, "tokens": tokens, "top_logprobs": tops},
    }


# ------------------------------------------------------------------ locating the continuation
def test_the_continuation_starts_after_the_context_whitespace_moved():
    ask = EchoRequest.of("Answer: ", "Paris")
    assert (ask.prompt, ask.context_chars, ask.n_chars) == ("Answer: Paris", 7, 6)
    c = choice(ask.prompt, ["Answer", ":", " Paris"], [None, -1.0, -2.5])
    assert score_choice(c, ask) == (-2.5, 1, True)


def test_text_before_the_prompt_and_generated_tokens_shift_nothing():
    ask = EchoRequest.of("Q: hi", " there you")
    toks, lps = ["Q", ":", " hi", " there", " you"], [None, -1.0, -2.0, -3.0, -0.5]
    assert score_choice(choice(ask.prompt, toks, lps), ask) == (-3.5, 2, True)
    bos = choice(ask.prompt, ["<s>", *toks], [None, -9.0, *lps[1:]])  # a BOS token's text before the prompt
    assert score_choice(bos, ask) == (-3.5, 2, True)
    generated = choice(ask.prompt, [*toks, " ok"], [*lps, -7.0], text=ask.prompt + " ok")
    assert score_choice(generated, ask) == (-3.5, 2, True)


def test_a_token_straddling_the_boundary_stays_with_the_context():
    ask = EchoRequest.of("abc", "de")  # the server merged "c" and "d" into one token
    c = choice(ask.prompt, ["ab", "cd", "e"], [None, -1.0, -2.0])
    assert score_choice(c, ask) == (-2.0, 1, True)
    with pytest.raises(UserError, match="empty continuation"):
        score_choice(choice("abcd", ["ab", "cd"], [None, -1.0]), EchoRequest.of("abc", "d"))


def test_pieces_of_a_character_ask_for_the_context_token_count():
    ask = EchoRequest.of("Q:", "é!")  # "é" as two byte tokens, each reported as U+FFFD
    c = choice(ask.prompt, ["Q", ":", "\ufffd", "\ufffd", "!"], [None, -1.0, -2.0, -3.0, -4.0])
    with pytest.raises(OffsetsUnusable):
        score_choice(c, ask)
    assert score_choice(c, ask, context_tokens=2) == (-9.0, 3, True)


def test_greedy_means_the_best_alternative():
    ask = EchoRequest.of("A", " b")
    c = choice(ask.prompt, ["A", " b"], [None, -2.0])
    c["logprobs"]["top_logprobs"][1] = {" b": -2.0, " c": -0.1}
    assert score_choice(c, ask) == (-2.0, 1, False)


# ------------------------------------------------------------------ real log-probabilities (SmolLM2)
def stored(r) -> dict:
    """An option's scores as evaluate stores them."""
    return {"logprob": r.logprob, "n_tokens": r.n_tokens, "n_chars": r.n_chars}


@pytest.fixture(scope="module")
def smollm2():
    lm = load_local_lm("smollm2", device="cpu")
    srv = LogprobServer(smollm2_scorer(lm), model="smollm2")
    yield lm, srv
    srv.stop()


def test_server_scores_equal_local_scores_and_predictions(smollm2, tmp_path):
    lm, srv = smollm2
    items = [next(i for i in load_sample() if i.task == t) for t in TASKS]
    reqs = [(base_context(i), text) for i in items for text in i.options.values()]
    reqs += [("问题：中国的首都是哪里？答案：", "北京"), ("The café is ", "très bien")]  # offsets cannot place these
    remote = OpenAICompatLM("smollm2", base_url=srv.url, cache_dir=tmp_path, prompts_per_request=4)
    got, want = remote.loglikelihood_detailed(reqs), lm.loglikelihood_detailed(reqs)
    for g, w in zip(got, want, strict=True):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-3)
        assert (g.n_tokens, g.n_chars, g.is_greedy) == (w.n_tokens, w.n_chars, w.is_greedy)
    k = 0
    for inst in items:  # the letters evaluate would predict, under every normalisation
        n = len(inst.options)
        server_side = dict(zip(inst.options, map(stored, got[k : k + n]), strict=True))
        local_side = dict(zip(inst.options, map(stored, want[k : k + n]), strict=True))
        k += n
        assert predict_base(server_side) == predict_base(local_side)
    assert remote.usage["requests"] > math.ceil(len(reqs) / 4)  # batches of 4, then the Chinese context's count
    again = OpenAICompatLM("smollm2", base_url=srv.url, cache_dir=tmp_path)
    assert again.loglikelihood(reqs[:3]) == [r.logprob for r in got[:3]] and again.usage["requests"] == 0


# ------------------------------------------------------------------ plumbing (no model)
REQS = [("Q: one two", " three"), ("Q: one two", " four five"), ("Q: six", " seven"), ("Q: six", " seven")]


def test_batched_cached_and_retried(tmp_path):
    srv = LogprobServer(word_scorer, script=[500, 503])
    try:
        lm = client(srv.url, tmp_path, prompts_per_request=2)
        assert lm.loglikelihood(REQS) == pytest.approx([-0.6, -1.0, -0.6, -0.6])
        assert lm.usage["retries"] == 2 and lm.usage["requests"] == 4  # 3 unique prompts: 2 batches + 2 retries
        assert [b["prompt"] for b in srv.bodies[2:]] == [["Q: one two three", "Q: one two four five"], "Q: six seven"]
        assert all(b["echo"] is True and b["max_tokens"] == 0 and b["logprobs"] == 1 for b in srv.bodies)
    finally:
        srv.stop()
    cached = client(srv.url, tmp_path)  # the server is gone: every answer comes from the cache
    assert cached.loglikelihood(REQS) == pytest.approx([-0.6, -1.0, -0.6, -0.6]) and cached.usage["cache_hits"] == 3


def test_a_server_refusing_a_list_gets_one_prompt_per_request(tmp_path, capsys):
    srv = LogprobServer(word_scorer, one_prompt=True)
    try:
        lm = client(srv.url, tmp_path, prompts_per_request=8)
        assert lm.loglikelihood(REQS) == pytest.approx([-0.6, -1.0, -0.6, -0.6])
        assert [b["prompt"] for b in srv.bodies[1:]] == ["Q: one two three", "Q: one two four five", "Q: six seven"]
        assert "takes one prompt per request" in capsys.readouterr().err
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogprobServer(word_scorer, no_logprobs=True),  # ignores echo/logprobs
        lambda: ScriptedServer([(404, "Not Found")]),  # no /v1/completions (`transformers serve`)
        lambda: ScriptedServer([(500, "Unsupported param: echo")]),  # llama.cpp's server
    ],
    ids=["no-logprobs", "no-endpoint", "echo-refused"],
)
def test_a_server_without_prompt_logprobs_is_one_line(tmp_path, make):
    srv = make()
    try:
        with pytest.raises(ServerCannotScore) as err:
            client(srv.url, tmp_path).loglikelihood(REQS)
        line = str(err.value)
        assert "\n" not in line and srv.url in line and "echo and logprobs" in line
        assert "vLLM" in line and "--mode chat" in line
        assert len(getattr(srv, "bodies", [])) <= 1  # not retried
    finally:
        srv.stop()


def test_an_unknown_model_is_named(tmp_path):
    srv = LogprobServer(word_scorer, model="served")
    try:
        with pytest.raises(UserError, match="does not know model 'm'"):
            client(srv.url, tmp_path).loglikelihood(REQS)
    finally:
        srv.stop()
