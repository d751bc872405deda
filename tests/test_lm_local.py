"""Local transformers backend: shared-context log-likelihood equals the naive per-request computation."""

from __future__ import annotations

import math

import pytest

from distillkit.errors import UserError
from distillkit.lm import GenerationConfig, load_local_lm
from distillkit.lm.offline import tiny_llama_folder


@pytest.fixture(scope="module")
def tiny():
    return load_local_lm(str(tiny_llama_folder()), device="cpu", max_length=256, batch_size=3)


def test_shared_context_matches_naive(tiny):
    ctx = "Read the dialogue.【Dialogue content】User: hi there\nAssistant: hello!【Reply】"
    reqs = [
        (ctx, "Fine, thanks."),
        (ctx, "The weather is bad today in Paris."),
        (ctx, "Yes"),
        (ctx, "No, never."),
        ("Another context ", "with trailing space"),
        ("", "no context at all"),
    ]
    fast = tiny.loglikelihood_detailed(reqs)
    slow = tiny.loglikelihood_naive(reqs)
    for f, s in zip(fast, slow, strict=True):
        assert f.n_tokens == s.n_tokens
        assert math.isclose(f.logprob, s.logprob, rel_tol=1e-4, abs_tol=1e-3)
        assert f.is_greedy == s.is_greedy
    assert tiny.loglikelihood(reqs[:2]) == pytest.approx([fast[0].logprob, fast[1].logprob], abs=1e-4)


def test_encode_pair_moves_trailing_space(tiny):
    ctx, cont = tiny.encode_pair("Answer: ", "Paris")
    whole = tiny.tokenizer("Answer: Paris").input_ids
    assert ctx + cont == whole
    assert tiny.tokenizer.decode(cont).startswith(" ")


def test_left_truncation_never_cuts_the_option(tiny):
    long_ctx = "word " * 400
    res = tiny.loglikelihood_detailed([(long_ctx, "the option text"), (long_ctx, "another one")])
    assert all(r.truncated for r in res)
    assert res[0].n_tokens == len(tiny.encode_pair(long_ctx, "the option text")[1])
    with pytest.raises(UserError, match="beyond the 256-token window"):
        tiny.loglikelihood_detailed([("ctx", "x " * 400)])


def test_greedy_generation_is_deterministic_and_batched(tiny):
    cfg = GenerationConfig(max_new_tokens=6)
    a = tiny.generate(["Hello there", "A much longer prompt that needs padding on the left"], cfg)
    b = [tiny.generate([p], cfg)[0] for p in ["Hello there", "A much longer prompt that needs padding on the left"]]
    assert a == b
    seen = []
    tiny.chat([[{"role": "user", "content": "hi"}]], cfg, on_result=lambda i, t: seen.append(i))
    assert seen == [0]
    assert "<|im_start|>user" in tiny.render_chat([{"role": "user", "content": "hi"}])


def test_sampling_uses_the_seed(tiny):
    import torch

    prompts = ["Once", "Twice upon"]
    a = GenerationConfig(max_new_tokens=8, do_sample=True, seed=3)
    first = tiny.generate(prompts, a)
    torch.manual_seed(12345)  # the global RNG state in between must not matter: the seed decides
    torch.rand(7)
    assert tiny.generate(prompts, a) == first
    other = tiny.generate(prompts, GenerationConfig(max_new_tokens=8, do_sample=True, seed=4))
    assert other[0] != first[0] and other[1] != first[1]
    greedy = tiny.generate(prompts, GenerationConfig(max_new_tokens=8))
    assert greedy != first and greedy != other  # do_sample really samples


def test_missing_model_is_one_clear_error(tmp_path):
    """Every causal LM (evaluation's and DiLM's generators) loads through the one loader behind load_local_lm."""
    with pytest.raises(UserError, match="model folder .*nowhere does not exist; check the path"):
        load_local_lm(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not load model .*empty.*give a local folder"):
        load_local_lm(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="GGUF file .*missing.gguf does not exist"):
        load_local_lm(str(tmp_path / "missing.gguf"))


def test_smollm2_loads_from_cached_folder_and_answers():
    lm = load_local_lm("smollm2", device="cpu")
    assert lm.describe()["parameters"] > 100_000_000
    out = lm.chat(
        [[{"role": "user", "content": "What is the capital of France? Answer in one word."}]],
        GenerationConfig(max_new_tokens=8),
    )
    assert "Paris" in out[0]


@pytest.mark.slow
def test_gguf_file_is_converted_once_and_matches_the_cached_folder(tmp_path, monkeypatch):
    import torch

    from distillkit.lm.offline import smollm2_gguf_path

    reference = load_local_lm("smollm2", device="cpu")
    monkeypatch.setenv("DISTILLKIT_CACHE", str(tmp_path))
    lm = load_local_lm(str(smollm2_gguf_path()), device="cpu")
    assert list((tmp_path / "models").iterdir())  # converted into the (temporary) cache
    ref = reference.model.state_dict()
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    again = load_local_lm(str(smollm2_gguf_path()), device="cpu")  # second load reuses the folder
    assert again.load_seconds < lm.load_seconds


def test_revision_and_remote_code_reach_the_loader(monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(path, **kw):
        seen.append({k: kw.get(k) for k in ("revision", "trust_remote_code")})
        return real(path, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    lm = load_local_lm(str(tiny_llama_folder()), device="cpu", revision="main")
    assert seen == [{"revision": "main", "trust_remote_code": False}]
    assert lm.loglikelihood([("a b", " c")])[0] < 0
