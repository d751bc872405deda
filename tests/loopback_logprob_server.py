"""A loopback `/v1/completions` server that echoes prompts with their log-probabilities, vLLM style.

`LogprobServer(scorer)` answers `echo=True, logprobs=N, max_tokens=0` requests (one prompt or a list) with
`text_offset`, `token_logprobs`, `tokens` and `top_logprobs` per prompt token, the first token without a
log-probability and each token's text decoded on its own, as vLLM does. `smollm2_scorer(lm)` computes real
log-probabilities with a local causal LM (one forward pass per prompt); `word_scorer` is a model-free
stand-in for tests of the client's plumbing.

Failure modes, for the tests: `script` (HTTP codes played before answering, one per request), `no_logprobs`
(answers like a server that ignores echo/logprobs), `one_prompt` (refuses a list of prompts), `bos` (text a
server puts in front of the prompt as a first token, like Llama's "<s>").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from distillkit.lm.loopback import JSONHandler, LoopbackServer

# one scored prompt token: (its text, its log-probability or None, the top alternatives {text: logprob} or None)
Token = tuple[str, float | None, dict[str, float] | None]
Scorer = Callable[[str], list[Token]]


def smollm2_scorer(lm) -> Scorer:
    """Real prompt log-probabilities from a `distillkit.lm.LocalLM` (its model and tokenizer), fp32 on CPU."""
    import torch

    lock = threading.Lock()
    tok = lm.tokenizer

    def score(prompt: str) -> list[Token]:
        ids = tok(prompt).input_ids
        with lock, torch.inference_mode():
            logits = lm.model(torch.tensor([ids], device=lm.device)).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            best = logp.argmax(-1).tolist()
            picked = logp[:-1].gather(-1, torch.tensor(ids[1:], device=lm.device)[:, None])[:, 0].tolist()
            best_lp = logp.max(-1).values.tolist()
        texts = _token_texts(tok, ids)
        out: list[Token] = [(texts[0], None, None)]
        for i in range(1, len(ids)):
            top = {texts[i]: picked[i - 1], tok.decode([best[i - 1]]): best_lp[i - 1]}
            out.append((texts[i], picked[i - 1], top))
        return out

    return score


def _token_texts(tok, ids: list[int]) -> list[str]:
    """Each token decoded on its own, as vLLM reports prompt tokens: a piece of a UTF-8 character is "\ufffd"."""
    return [tok.decode([i]) for i in ids]


def word_scorer(prompt: str) -> list[Token]:
    """A model-free scorer: words (with their leading space) as tokens, log-probability -len(word)/10."""
    words = re.findall(r"\s*\S+|\s+$", prompt)
    out: list[Token] = [(words[0], None, None)]
    out += [(w, -len(w) / 10, {w: -len(w) / 10}) for w in words[1:]]
    return out


class LogprobServer(LoopbackServer):
    """An OpenAI-compatible `/v1/completions` server on 127.0.0.1 (a free port) in a thread."""

    def __init__(
        self,
        scorer: Scorer,
        model: str = "m",
        script: list[int] | None = None,
        no_logprobs: bool = False,
        one_prompt: bool = False,
        bos: str = "",
    ):
        self.scorer, self.model, self.bos = scorer, model, bos
        self.script = list(script or [])
        self.no_logprobs, self.one_prompt = no_logprobs, one_prompt
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):  # noqa: N802
                body = self.read_json()
                with outer.lock:
                    outer.bodies.append(body)
                    step = outer.script.pop(0) if outer.script else None
                if step is not None:
                    return self.send_json(step, {"error": {"message": f"injected {step}"}}, {"retry-after": "0"})
                if not self.path.endswith("/completions"):
                    return self.send_json(404, {"detail": "Not Found"})
                if body.get("model") != outer.model:
                    missing = {"message": f"The model `{body.get('model')}` does not exist."}
                    return self.send_json(404, {"error": missing})
                code, answer = outer.answer(body)
                self.send_json(code, answer)

        super().__init__(Handler)

    def answer(self, body: dict) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one completions request."""
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if self.one_prompt and isinstance(body["prompt"], list):
            return 400, {"error": {"message": "prompt must be a string", "type": "invalid_request_error"}}
        if not (body.get("echo") and body.get("max_tokens") == 0 and body.get("logprobs") is not None):
            return 400, {"error": {"message": "this server only scores prompts (echo, logprobs, max_tokens=0)"}}
        choices, n_tokens = [], 0
        for i, prompt in enumerate(prompts):
            tokens = self.scorer(prompt)
            if self.bos:
                tokens = [(self.bos, None, None), *tokens]
            n_tokens += len(tokens)
            offsets, at = [], 0
            for text, _, _ in tokens:
                offsets.append(at)
                at += len(text)
            logprobs = {
                "text_offset": offsets,
                "token_logprobs": [lp for _, lp, _ in tokens],
                "tokens": [t for t, _, _ in tokens],
                "top_logprobs": [top for _, _, top in tokens],
            }
            choice = {"index": i, "text": prompt, "finish_reason": "length"}
            choices.append(choice | {"logprobs": None if self.no_logprobs else logprobs})
        usage = {"prompt_tokens": n_tokens, "completion_tokens": 0, "total_tokens": n_tokens}
        return 200, {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": self.model} | {
            "choices": choices,
            "usage": usage,
        }
