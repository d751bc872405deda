"""The one causal-LM loader: DialogBench's local models and DiLM's generators get the same model from a name."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from distillkit.errors import UserError
from distillkit.lm import load_causal_lm, load_local_lm
from distillkit.lm.offline import tiny_llama_folder
from distillkit.text.models import load_generator_lm


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_local_models_and_dilm_generators_load_the_same_model():
    folder = str(tiny_llama_folder())
    lm = load_local_lm(folder, device="cpu", dtype="float32")
    model, tok = load_generator_lm(folder)
    assert _same_weights(lm.model, model) and next(model.parameters()).dtype == torch.float32
    assert tok.get_vocab() == lm.tokenizer.get_vocab() and tok.chat_template == lm.tokenizer.chat_template


def test_tiny_random_models_are_seeded_and_use_smollm2s_tokenizer():
    a, tok = load_causal_lm("tiny-gpt2", seed=0)
    b, _ = load_causal_lm("tiny-gpt2", seed=0)
    c, _ = load_causal_lm("tiny-gpt2", seed=1)
    assert _same_weights(a, b) and not _same_weights(a, c)
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>"
    llama, _ = load_causal_lm("tiny-llama")
    assert type(llama).__name__ == "LlamaForCausalLM" and llama.config.tie_word_embeddings


def test_scratch_generator_stays_dilms_own():
    with pytest.raises(UserError, match="needs training texts"):
        load_generator_lm("scratch-gpt2")
    model, tok = load_generator_lm("scratch-gpt2", texts=["a good review", "a bad review"] * 20)
    assert model.config.n_layer == 4 and tok.eos_token == "<|endoftext|>"
