"""Local transformers models: log-likelihood with a shared-context KV cache, generation, chat templates."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from distillkit.devices import autocast, bf16_supported, check_precision, resolve_device
from distillkit.errors import UserError
from distillkit.lm.config import GenerationConfig, apply_stop
from distillkit.lm.protocol import LoglikelihoodResult
from distillkit.seeding import derive_seed


class LocalLM:
    """A causal LM with its tokenizer.

    - `loglikelihood(requests)`: log p(continuation | context) for (context, continuation) pairs.
      Requests that share a context (e.g. the options of one question) are scored with one forward
      pass over the context; its KV cache is reused for all continuations in a single batch.
    - `generate(prompts, config)`: greedy or sampled decoding, batched with left padding.
    - `chat(conversations, config)`: the same through the tokenizer's chat template.

    `precision="bf16"` runs the forward passes under bfloat16 autocast (log-softmax stays float32).
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str = "local",
        max_length: int = 2048,
        batch_size: int = 8,
        precision: str = "fp32",
    ):
        self.model = model.eval()
        self.precision = check_precision(precision, next(model.parameters()).device)
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "forward_tokens": 0}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """What to record with results: name, class, parameter count, dtype, device, window."""
        return {
            "backend": "local",
            "name": self.name,
            "architecture": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(next(self.model.parameters()).dtype),
            "device": str(self.device),
            "precision": self.precision,
            "max_length": self.max_length,
            "revision": getattr(self.model.config, "_commit_hash", None),  # hub snapshot, when loaded from the hub
            "source": getattr(self.model.config, "_name_or_path", None),
            "chat_template_sha256": _text_digest(getattr(self.tokenizer, "chat_template", None)),
        }

    # ---------------------------------------------------------------- tokenisation
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval style: trailing whitespace of the context moves to the continuation; the continuation
        tokens are those of enc(context + continuation) beyond len(enc(context))."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer(context + continuation).input_ids
        ctx = self.tokenizer(context).input_ids if context else []
        cont = whole[len(ctx) :]
        if not ctx:
            prefix = self.tokenizer.bos_token_id
            ctx = [prefix if prefix is not None else self.tokenizer.eos_token_id]
        if not cont:
            raise UserError(f"empty continuation after tokenisation for {continuation[:40]!r}; give non-empty options")
        return ctx, cont

    # ---------------------------------------------------------------- likelihood
    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probability of each continuation given its context."""
        return [r.logprob for r in self.loglikelihood_detailed(requests)]

    @torch.inference_mode()
    def loglikelihood_detailed(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """Like `loglikelihood`, with token/char counts, greedy flags and truncation flags.

        Requests are grouped by context. `batch_size` contexts go through one forward pass (left padded);
        then all their continuations go through a second pass that attends to the cached contexts.
        """
        encoded = [self.encode_pair(c, x) for c, x in requests]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(encoded):
            groups.setdefault(tuple(ctx), []).append(i)
        items = list(groups.items())
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            scored = self._score_groups([(list(ctx), [encoded[i][1] for i in idxs]) for ctx, idxs in chunk])
            for (_, idxs), group_scores in zip(chunk, scored, strict=True):
                for i, (lp, greedy, trunc) in zip(idxs, group_scores, strict=True):
                    ctx_text = requests[i][0]
                    n_chars = len(requests[i][1]) + len(ctx_text) - len(ctx_text.rstrip())
                    results[i] = LoglikelihoodResult(lp, len(encoded[i][1]), n_chars, greedy, trunc)
        return results  # type: ignore[return-value]

    def _score_groups(self, groups: list[tuple[list[int], list[list[int]]]]) -> list[list[tuple[float, bool, bool]]]:
        """Score the continuations of several contexts: one pass over the contexts, one over all continuations."""
        dev = self.device
        pad = self.tokenizer.pad_token_id
        ctxs, truncs = [], []
        for ctx, conts in groups:
            longest = max(len(c) for c in conts)
            if longest >= self.max_length:
                raise UserError(
                    f"an option is {longest} tokens long, beyond the {self.max_length}-token window; "
                    "shorten it or raise max_length"
                )
            room = self.max_length - longest
            truncs.append(len(ctx) > room)
            ctxs.append(ctx[-room:])
        n = len(ctxs)
        lc = max(len(c) for c in ctxs)
        ids = torch.full((n, lc), pad, dtype=torch.long)
        mask = torch.zeros((n, lc), dtype=torch.long)
        for r, c in enumerate(ctxs):  # left padding: every context ends at the last column
            ids[r, lc - len(c) :] = torch.tensor(c)
            mask[r, lc - len(c) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with autocast(dev, self.precision):
            out = self.model(
                ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True, logits_to_keep=1
            )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [n, vocab]
        rows = [(g, c) for g, (_, conts) in enumerate(groups) for c in conts]
        lo = max(len(c) for _, c in rows)
        self.usage["forward_tokens"] += n * lc + len(rows) * max(lo - 1, 0)
        logp = None
        if lo > 1:
            cache = out.past_key_values
            cache.batch_select_indices(torch.tensor([g for g, _ in rows], device=dev))
            inp = torch.full((len(rows), lo - 1), pad, dtype=torch.long)
            for r, (_, c) in enumerate(rows):
                inp[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
            gidx = torch.tensor([g for g, _ in rows])
            full_mask = torch.cat([mask[gidx], torch.ones((len(rows), lo - 1), dtype=torch.long)], dim=-1)
            opt_pos = torch.tensor([len(ctxs[g]) for g, _ in rows])[:, None] + torch.arange(lo - 1)[None]
            with autocast(dev, self.precision):
                logits = self.model(
                    inp.to(dev),
                    attention_mask=full_mask.to(dev),
                    position_ids=opt_pos.to(dev),
                    past_key_values=cache,
                    use_cache=True,
                ).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
        # every row's score on the device at once, read back in one transfer (not one sync per option)
        row_group = torch.tensor([g for g, _ in rows], device=dev)
        first_tok = torch.tensor([c[0] for _, c in rows], device=dev)
        head_lp = first[row_group, first_tok]
        greedy = first.argmax(-1)[row_group] == first_tok
        rest_lp = torch.zeros_like(head_lp)
        if logp is not None:
            tgt = torch.full((len(rows), lo - 1), -1, dtype=torch.long)
            for r, (_, c) in enumerate(rows):
                tgt[r, : len(c) - 1] = torch.tensor(c[1:], dtype=torch.long)
            tgt = tgt.to(dev)
            scored = tgt >= 0
            picked = logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
            rest_lp = torch.where(scored, picked, torch.zeros_like(picked)).sum(-1)
            greedy &= ((logp.argmax(-1) == tgt) | ~scored).all(-1)
        res: list[list[tuple[float, bool, bool]]] = [[] for _ in groups]
        for (g, _), h, rest, ok in zip(rows, head_lp.tolist(), rest_lp.tolist(), greedy.tolist(), strict=True):
            res[g].append((h + rest, bool(ok), truncs[g]))
        return res

    @torch.inference_mode()
    def loglikelihood_naive(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """Reference: one full forward pass per request, no cache, no batching (the official method)."""
        out = []
        for context, continuation in requests:
            ctx, cont = self.encode_pair(context, continuation)
            ids = (ctx + cont)[-(self.max_length + 1) :][:-1]
            with autocast(self.device, self.precision):
                logits = self.model(torch.tensor([ids], device=self.device)).logits[0, -len(cont) :].float()
            logp = torch.log_softmax(logits, dim=-1)
            tgt = torch.tensor(cont, device=self.device)
            lp = logp.gather(-1, tgt[:, None]).sum().item()
            greedy = bool((logp.argmax(-1) == tgt).all())
            n_chars = len(continuation) + len(context) - len(context.rstrip())
            out.append(LoglikelihoodResult(lp, len(cont), n_chars, greedy, len(ctx) + len(cont) > self.max_length + 1))
        return out

    # ---------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        add_special_tokens: bool = True,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Decode a continuation for each prompt (batched, left padding); stop strings are applied.

        `on_result(i, text)` is called as soon as prompt i is done (e.g. to save it at once).
        """
        config = config or GenerationConfig()
        outs: list[str] = []
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(prompts), self.batch_size):
                batch = list(prompts[start : start + self.batch_size])
                enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
                enc = {k: v.to(self.device) for k, v in enc.items()}
                kwargs = dict(
                    max_new_tokens=config.max_new_tokens,
                    do_sample=config.do_sample,
                    pad_token_id=tok.pad_token_id,
                    num_beams=1,
                    repetition_penalty=1.0,
                )
                if config.do_sample:
                    torch.manual_seed(derive_seed(config.seed, "local_sample", start))
                    kwargs.update(temperature=config.temperature, top_p=config.top_p)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                with autocast(self.device, self.precision):
                    gen = self.model.generate(**enc, **kwargs)
                new = gen[:, enc["input_ids"].shape[1] :]
                self.usage["prompt_tokens"] += int(enc["attention_mask"].sum())
                for row in new:
                    n = int((row != tok.pad_token_id).sum()) if tok.pad_token_id is not None else len(row)
                    self.usage["completion_tokens"] += n
                    outs.append(apply_stop(tok.decode(row, skip_special_tokens=True), config.stop))
                    if on_result is not None:
                        on_result(len(outs) - 1, outs[-1])
        finally:
            tok.padding_side = old_side
        return outs

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt string the chat template makes of `messages` (with the generation prompt)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"model {self.name} has no chat template; evaluate it with --mode base")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def chat(
        self,
        conversations: Sequence[list[dict[str, str]]],
        config: GenerationConfig | None = None,
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str]:
        """Reply to each conversation (a list of {'role', 'content'} messages)."""
        prompts = [self.render_chat(m) for m in conversations]
        return self.generate(prompts, config, add_special_tokens=False, on_result=on_result)


def resolve_model(name_or_path: str) -> tuple[str, dict]:
    """The one alias table: aliases and GGUF files mapped to something `from_pretrained` loads fast."""
    from distillkit.lm.offline import SMOLLM2_NAME, gguf_to_hf_folder, smollm2_folder
    from distillkit.runs import cache_dir

    if name_or_path.lower() in {"smollm2", SMOLLM2_NAME, "smollm2-135m"}:
        return str(smollm2_folder()), {}
    p = Path(name_or_path).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise UserError(f"GGUF file {p} does not exist; check the path")
        st = p.stat()
        key = hashlib.sha256(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        out = cache_dir() / "models" / f"{p.stem}-{key}"
        if not (out / "config.json").exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            gguf_to_hf_folder(p, out)
        return str(out), {}
    if name_or_path.startswith((".", "/", "~")) and not p.exists():
        raise UserError(f"model folder {p} does not exist; check the path")
    return str(p) if p.exists() else name_or_path, {}


def model_identity(name_or_path: str) -> str | None:
    """What a local model is, cheaply: its files' names, sizes and times for a folder or file (GGUF, converted
    alias), or the hub snapshot's commit for a cached hub id; None when neither can be read."""
    path = Path(resolve_model(name_or_path)[0])
    if path.exists():
        files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
        stats = [(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return "files:" + hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(path), "config.json")
    return f"revision:{Path(cached).parent.name}" if isinstance(cached, str) else None


WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _text_digest(text: str | dict | None) -> str | None:
    """sha256 of a chat template (a string, or a dict of named templates), to tell templates apart."""
    if not text:
        return None
    return hashlib.sha256(json.dumps(text, sort_keys=True).encode()).hexdigest()[:16]


def weight_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The weights' dtype: as named, else bfloat16 on a CUDA GPU that supports it and float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" and bf16_supported(device) else torch.float32
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    name = aliases.get(dtype.strip().lower(), dtype.strip().lower())
    if name not in WEIGHT_DTYPES:
        raise UserError(f"dtype {dtype!r} is not supported; use one of {', '.join(WEIGHT_DTYPES)}")
    if name == "bfloat16":
        check_precision("bf16", device)
    return WEIGHT_DTYPES[name]


def load_local_lm(
    name_or_path: str,
    device: str | torch.device | None = "auto",
    dtype: str | None = None,
    max_length: int = 2048,
    batch_size: int = 8,
    precision: str = "fp32",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LocalLM:
    """Load a Hugging Face model id, a local folder, a `.gguf` file, or the alias `smollm2`.

    GGUF files are dequantised once into an fp32 folder under the distillkit cache, so later loads are fast.
    `device` follows `distillkit.devices.resolve_device` ("auto": CUDA when present, else CPU). `dtype`
    (weights) defaults to float32 on CPU and bfloat16 on a CUDA GPU that has it; `precision="bf16"` keeps
    the weights' dtype and runs the forward passes under bfloat16 autocast. `revision` pins a hub model to a
    branch, tag or commit; `trust_remote_code` runs a model's own modelling code (off unless asked).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    torch_dtype = weight_dtype(dtype, device)
    check_precision(precision, device)
    path, kwargs = resolve_model(name_or_path)
    kwargs = {**kwargs, "revision": revision, "trust_remote_code": trust_remote_code}
    t0 = time.time()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs).to(device)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"could not load model {name_or_path!r} ({first[:200]}); give a local folder, a .gguf file, "
            "'smollm2', or a Hugging Face id that is in the local cache"
        ) from None
    lm = LocalLM(model, tokenizer, name_or_path, max_length, batch_size, precision)
    lm.load_seconds = time.time() - t0
    return lm
